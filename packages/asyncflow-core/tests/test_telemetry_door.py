"""``WorkflowEngine.start_telemetry()`` is a door to the asyncflow-otel plugin."""

from __future__ import annotations

import sys

import pytest

from asyncflow import WorkflowEngine


async def test_start_telemetry_without_the_plugin_says_what_to_install(
        noop_flow: WorkflowEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncflow_otel", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install asyncflow-otel"):
        await noop_flow.start_telemetry()
