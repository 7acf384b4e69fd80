"""One real pilot for the whole test run, shared by every test that does not need its own.

A pilot takes ~15-25 s to start and ~5 s to stop, so the session starts one (`pilot`) on an
event loop of its own thread, and each test runs on `pilot.share()`: a backend of its own, on
the test's own loop, whose shutdown leaves the pilot alone. `tests/run.sh` runs the session
contained (process group, temporary HOME and RADICAL folders, a loopback-only resource).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import asyncflow
from asyncflow import TaskRecord, TaskState, WorkflowEngine
from asyncflow_radical import RadicalExecutionBackend

# radical.utils leaves its ZMQ contexts and sockets to the garbage collector ("rely on GC for
# destruction"), which warns whenever it collects one: in whatever test runs then, or after
# the last one.
ZMQ_LEFTOVERS = ("ignore:Unclosed context:ResourceWarning",
                 "ignore:Unclosed socket:ResourceWarning")


# tests/slurm need a Slurm cluster: `nox -s hpc` starts one (scripts/slurm-cluster.sh) and runs
# them with ASYNCFLOW_SLURM_TESTS=1; everywhere else they are not collected (not skipped).
collect_ignore = [] if os.environ.get("ASYNCFLOW_SLURM_TESTS") else ["slurm"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for spec in ZMQ_LEFTOVERS:
            item.add_marker(pytest.mark.filterwarnings(spec))


def pytest_sessionfinish() -> None:
    with warnings.catch_warnings():
        for spec in ZMQ_LEFTOVERS:
            action, message, _ = spec.split(":")
            warnings.filterwarnings(action, message, ResourceWarning)  # type: ignore[arg-type]
        gc.collect()


# tests/run.sh selects its loopback-only resource; without it, this machine as RADICAL-Pilot
# ships it (then run from a virtualenv, and expect RADICAL's files in $HOME).
RESOURCE = os.environ.get("ASYNCFLOW_RADICAL_TEST_RESOURCE", "local.localhost")
CORES = int(os.environ.get("ASYNCFLOW_RADICAL_TEST_CORES", "8"))
OPTIONS: dict[str, Any] = {
    "resource": RESOURCE, "cores": CORES, "runtime": 30,
    "raptor_workers": 1, "raptor_cores_per_worker": 3,  # 1 master + 3: 4 cores left for commands
}


@pytest.fixture(scope="session")
def pilot() -> Iterator[RadicalExecutionBackend]:
    """The session's pilot: a started backend on a loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pilot-loop", daemon=True)
    thread.start()
    host = RadicalExecutionBackend(**OPTIONS)

    def run(coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    async def start() -> None:
        host.attach(_nobody_listens)
        await host.open()

    try:
        run(start(), 300)
        yield host
    finally:
        run(host.close(), 180)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _nobody_listens(update: Any) -> None:
    """The host runs no task itself: every test submits through a share of it."""


@pytest.fixture
async def flow(pilot: RadicalExecutionBackend, states: StateWatch,
               tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    """An engine on this test's loop that runs its tasks on the session's pilot (created
    after `states`, so that the engine hears it)."""
    engine = await WorkflowEngine.create(backend=pilot.share(), work_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.shutdown()


class StateWatch:
    """Awaitable task states, heard through the engine's observer hook (no polling)."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, TaskState], asyncio.Future[None]] = {}

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, new: TaskState) -> None:
        waiter = self._waiters.get((task.uid, new))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reached(self, uid: str, state: TaskState) -> asyncio.Future[None]:
        """Resolves when task ``uid`` reaches ``state`` (ask before it can happen)."""
        key = (uid, state)
        if key not in self._waiters:
            self._waiters[key] = asyncio.get_running_loop().create_future()
        return self._waiters[key]


@pytest.fixture
def states() -> Iterator[StateWatch]:
    """Register before the engine is created: engines resolve their observers then."""
    watch = StateWatch()
    asyncflow.register(watch)
    try:
        yield watch
    finally:
        asyncflow.plugin_manager().unregister(watch)


def group_processes() -> set[psutil.Process]:
    """Every process in this process group except this one: RADICAL-Pilot's daemons keep it
    (the tasks they run get sessions of their own)."""
    group, found = os.getpgid(0), set()
    for process in psutil.process_iter(["name"]):  # names read now: `.info["name"]`
        try:
            if process.pid != os.getpid() and os.getpgid(process.pid) == group:
                found.add(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found
