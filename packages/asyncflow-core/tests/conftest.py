"""Fixtures of the core's tests: engines on the ``noop`` backend and on ``LoopBackend``.

Every test also runs under a loop exception handler that fails it if asyncio reports
anything: "Task was destroyed but it is pending", "exception was never retrieved" and the
like go through that handler, not through warnings.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from loop_backend import LoopBackend, LoopPlugin
from recording_observer import Observer

import asyncflow
from asyncflow import WorkflowEngine

_PLUGIN = LoopPlugin()


@pytest.fixture(scope="session", autouse=True)
def loop_plugin() -> Iterator[None]:
    """``loop`` and ``functions_only`` are installed backends, registered like any plugin."""
    asyncflow.register(_PLUGIN, name="tests.loop_backend")
    yield
    asyncflow.plugin_manager().unregister(_PLUGIN)


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What asyncio reported through the loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    yield reports
    gc.collect()  # futures and tasks dropped by the test report themselves when collected
    loop.set_exception_handler(None)
    assert not reports, [r.get("message") for r in reports]


@pytest.fixture
def backend() -> LoopBackend:
    return LoopBackend()


@pytest.fixture
async def flow(backend: LoopBackend) -> AsyncIterator[WorkflowEngine]:
    """An engine whose only backend is ``backend`` (a :class:`LoopBackend`)."""
    engine = await WorkflowEngine.create(backend=backend)
    yield engine
    await engine.shutdown()


@pytest.fixture
async def noop_flow() -> AsyncIterator[WorkflowEngine]:
    engine = await WorkflowEngine.create(backend="noop")
    yield engine
    await engine.shutdown()


@pytest.fixture
def observer() -> Iterator[Observer]:
    """An observer registered with ``asyncflow.register()``; engines created later see it."""
    plugin = Observer()
    asyncflow.register(plugin)
    yield plugin
    asyncflow.plugin_manager().unregister(plugin)
