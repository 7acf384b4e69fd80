from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from concurrent_support import MODES, StateWatch, make_backend

import asyncflow
from asyncflow import WorkflowEngine
from asyncflow.testing.processes import children


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # On Python >= 3.12 forking a multi-threaded process warns; a fork pool is what the
    # seed's users build (ProcessPoolExecutor()), and what these tests mean to exercise.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings(
            "ignore:This process .* is multi-threaded:DeprecationWarning"))


# Process-wide helpers multiprocessing starts once for the interpreter's life (spawn and
# forkserver pools need them); they are not the backend's to stop.
PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Every test ends with no child process of ours left, running or zombie."""
    before = children()
    yield
    left = {pid: cmd for pid, cmd in children().items()
            if pid not in before and not any(helper in cmd for helper in PYTHON_HELPERS)}
    assert not left, f"child processes left behind: {left}"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def watch() -> Iterator[StateWatch]:
    """Task states, for engines created after this fixture."""
    plugin = StateWatch()
    asyncflow.register(plugin)
    yield plugin
    asyncflow.plugin_manager().unregister(plugin)


@pytest.fixture
async def flow(mode: str, tmp_path: Path, watch: StateWatch) -> AsyncIterator[WorkflowEngine]:
    engine = await WorkflowEngine.create(backend=make_backend(mode), work_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.shutdown()
