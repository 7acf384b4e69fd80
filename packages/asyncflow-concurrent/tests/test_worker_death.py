"""A process-pool worker that dies mid-task: the task fails clearly, the pool is replaced, the
other tasks run on, and ``retries=`` runs the task again."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from concurrent_support import fifo, receive, send_pid_then_work, work_once

from asyncflow import WorkerLostError, WorkflowEngine
from asyncflow.retries import current_attempt
from asyncflow_concurrent import ConcurrentExecutionBackend


@pytest.fixture
def mode() -> str:
    return "processes"


async def test_a_killed_worker_fails_its_task_with_worker_lost_error(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    victim_pipe, bystander_pipe = fifo(tmp_path / "victim"), fifo(tmp_path / "bystander")
    victim = flow.function_task(send_pid_then_work)(victim_pipe, 3600)
    bystander = flow.function_task(work_once)(str(tmp_path / "marker"), bystander_pipe)
    pid = int(await receive(victim_pipe))
    await receive(bystander_pipe)

    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError) as lost:
        await victim
    message = str(lost.value)
    assert f"'send_pid_then_work' ({victim.uid})" in message
    assert f"worker process (pid {pid}) was killed by SIGKILL" in message
    assert await bystander == "ran again"
    assert await flow.function_task(os.getpid)() not in (pid, os.getpid())


async def test_retries_run_a_task_again_after_its_worker_died(flow: WorkflowEngine) -> None:
    @flow.function_task(retries=1)
    def crash_once() -> int:
        if current_attempt() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return current_attempt()

    @flow.function_task(retries=1)
    async def crash_once_async() -> int:
        await asyncio.sleep(0)
        if current_attempt() == 1:
            os._exit(3)
        return current_attempt()

    assert await asyncio.gather(crash_once(), crash_once_async()) == [2, 2]


async def test_a_worker_exiting_on_its_own_names_the_exit_code(flow: WorkflowEngine) -> None:
    @flow.function_task
    def leave() -> None:
        os._exit(7)

    task = leave()
    with pytest.raises(WorkerLostError, match=rf"'leave' \({task.uid}\).*exited with code 7"):
        await task


async def test_tasks_waiting_for_a_worker_run_after_the_pool_is_replaced(
        tmp_path: Path) -> None:
    # One worker: the first task kills it while the others wait for their turn.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=context)
    flow = await WorkflowEngine.create(backend=ConcurrentExecutionBackend(pool),
                                       work_dir=tmp_path)
    try:
        @flow.function_task
        def die() -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        waiting = [flow.function_task(pow)(2, i) for i in range(4)]
        with pytest.raises(WorkerLostError):
            await die()
        assert await asyncio.gather(*waiting) == [1, 2, 4, 8]
        replacement = flow.backends["concurrent"]._runner.pool  # type: ignore[attr-defined]
        assert replacement is not pool and replacement._mp_context is context
    finally:
        await flow.shutdown()
