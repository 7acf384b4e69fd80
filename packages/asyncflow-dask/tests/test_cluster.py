"""Integration: a real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, the
backend chosen by name in ``asyncflow.toml``, the seed's composite workflows, and faults:
a worker SIGKILLed mid-task and a scheduler that dies."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask_bodies as bodies
import pytest
from dask_cli import dask_cluster, environment
from dask_support import Inbox

from asyncflow import WorkflowEngine
from asyncflow.errors import BackendError, WorkerLostError
from asyncflow_dask import DaskExecutionBackend

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler whose tasks fail at the first dead worker (allowed-failures 0), and two
    worker processes with three threads each."""
    env = environment(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    with dask_cluster(tmp_path_factory.mktemp("cluster"), env=env) as (scheduler_address, _):
        yield scheduler_address


@pytest.fixture
def configured(address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose asyncflow.toml picks the Dask backend and its scheduler."""
    (tmp_path / "asyncflow.toml").write_text(
        f'backend = "dask"\n\n[backends.dask]\naddress = "{address}"\n')
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ASYNCFLOW_")]:
        monkeypatch.delenv(name)
    return tmp_path


async def test_seed_composite_workflows_by_name_from_a_config_file(configured: Path,
                                                                   address: str) -> None:
    flow = await WorkflowEngine.create()
    try:
        assert isinstance(flow.backend, DaskExecutionBackend)
        assert flow.backend.client.scheduler.address == address

        # The seed's tasks, defined here: cloudpickle sends them to the workers by value.
        @flow.function_task
        async def task1(name: str) -> float:
            now = time.time()
            await asyncio.sleep(0.5)  # simulate work
            return now

        @flow.function_task
        async def task2(name: str) -> float:
            now = time.time()
            await asyncio.sleep(0.5)
            return now

        @flow.function_task
        async def task3(name: str, *args: float) -> float:
            now = time.time()
            await asyncio.sleep(0.5)
            return now

        async def create_workflow(name: str) -> tuple[float, float, float]:
            t1 = task1("task1")
            t2 = task2("task2")
            t3 = task3("task3", t1, t2)
            await t3
            return t1.result(), t2.result(), t3.result()

        @flow.block
        async def create_block(name: str, *args: Any) -> list[tuple[float, float, float]]:
            return [await create_workflow(f"WF{i}") for i in (1, 2, 3)]

        for block in await asyncio.gather(create_block("Block A"), create_block("Block B"),
                                          create_block("Block C")):
            for t1, t2, t3 in block:
                assert t3 >= max(t1, t2) + 0.5  # task3 ran after task1 and task2 finished

        block1 = create_block("Block A")
        block2 = create_block("Block B")
        block3 = create_block("Block C", block1, block2)
        last = await block3
        first_of_block3 = last[0][0]
        assert first_of_block3 >= max(wf[2] for wf in (*block1.result(), *block2.result()))
    finally:
        await flow.shutdown()


async def test_a_worker_killed_mid_task_fails_it_and_a_retry_runs_elsewhere(
        configured: Path, inbox: Inbox) -> None:
    flow = await WorkflowEngine.create()
    try:
        once = flow.function_task(bodies.pid_through_gate)(inbox.address, "once")
        _, pid = await inbox.next()
        os.kill(pid, signal.SIGKILL)  # the worker process running the body
        with pytest.raises(WorkerLostError, match=rf"\({once.uid}, attempt 1\): the Dask "
                                                  r"worker tcp://127\.0\.0\.1:\d+ died"):
            await once

        retried = flow.function_task(retries=1)(bodies.pid_through_gate)(inbox.address, "again")
        _, pid = await inbox.next()
        os.kill(pid, signal.SIGKILL)
        _, second = await inbox.next()
        assert second != pid
        inbox.open_gate()
        assert await retried == second
    finally:
        await flow.shutdown()


async def test_losing_the_scheduler_fails_tasks_in_flight_and_never_hangs(
        tmp_path: Path, inbox: Inbox) -> None:
    with dask_cluster(tmp_path, nworkers=1, nthreads=1) as (scheduler_address, scheduler):
        backend = DaskExecutionBackend(address=scheduler_address)
        flow = await WorkflowEngine.create(backend=backend)
        try:
            in_flight = flow.function_task(bodies.pid_through_gate)(inbox.address, "orphan")
            await inbox.next()
            scheduler.stop(signal.SIGKILL)
            with pytest.raises(BackendError, match=rf"task 'pid_through_gate' "
                                                   rf"\({in_flight.uid}\) was lost with the "
                                                   rf"Dask scheduler at {scheduler_address}"):
                await in_flight
            with pytest.raises(BackendError, match="not connected to the scheduler"):
                await flow.function_task(bodies.size)(b"late")
        finally:
            await flow.shutdown()
            inbox.open_gate()
