"""Fixtures shared by the cross-package tests."""

from __future__ import annotations

import sys

import pytest
from _probe import install

import asyncflow


@pytest.fixture(scope="session")
def probe_plugin(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Register the probe plugin (see ``_probe.py``) in this process through the public door."""
    if "probe" in asyncflow.registry():
        return
    site = install(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    try:
        import asyncflow_probe  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(site))
    asyncflow.register(asyncflow_probe, name="asyncflow_probe")
