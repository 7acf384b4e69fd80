"""Cancelling and timing out running tasks: what stops, what cannot, and how it is told."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from concurrent_support import (
    LIMIT,
    StateWatch,
    exited,
    fifo,
    receive,
    send_pid_then_work,
    send_pid_then_work_async,
    work_once,
)

from asyncflow import TaskTimeoutError, WorkflowEngine
from asyncflow.testing.processes import alive
from asyncflow_concurrent import ConcurrentExecutionBackend


async def _wait(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, LIMIT), "the body never got there"


# -- coroutines on the loop and in threads: cancelled where they run ------------------------


@pytest.mark.parametrize("mode", ["loop", "threads"])
async def test_a_running_coroutine_is_cancelled(flow: WorkflowEngine, watch: StateWatch) -> None:
    stopped = threading.Event()

    @flow.function_task
    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    task = forever()
    await watch.reached(task)
    task.cancel()
    await _wait(stopped)
    assert task.cancelled()


@pytest.mark.parametrize("mode", ["loop", "threads"])
async def test_a_coroutine_past_its_timeout_is_stopped(flow: WorkflowEngine) -> None:
    stopped = threading.Event()

    @flow.function_task(timeout=0.2)
    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    with pytest.raises(TaskTimeoutError, match=r"'forever' exceeded its timeout of 0\.2 s$"):
        await forever()
    await _wait(stopped)


# -- plain bodies in threads: nothing can stop them, and the backend says so ----------------


@pytest.mark.parametrize("mode", ["loop", "threads"])
async def test_a_thread_body_past_its_timeout_fails_at_the_deadline_and_runs_on(
        flow: WorkflowEngine) -> None:
    release, finished = threading.Event(), threading.Event()

    @flow.function_task(timeout=0.2)
    def blocking() -> None:
        release.wait(LIMIT)
        finished.set()

    with pytest.raises(TaskTimeoutError, match="keeps running in its thread until it returns"):
        await blocking()
    assert not finished.is_set(), "the task must fail at the deadline, not when the body ends"
    release.set()
    await _wait(finished)


@pytest.mark.parametrize("mode", ["loop", "threads"])
async def test_cancelling_a_thread_body_settles_the_future_the_body_runs_on(
        flow: WorkflowEngine, watch: StateWatch, caplog: pytest.LogCaptureFixture) -> None:
    release, finished = threading.Event(), threading.Event()

    @flow.function_task
    def blocking() -> str:
        release.wait(LIMIT)
        finished.set()
        return "done"

    task = blocking()
    await watch.reached(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await _wait(finished)
    assert "cannot be stopped: its body runs in a thread" in caplog.text


async def test_timeout_counts_from_the_body_start_not_the_queue(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=ConcurrentExecutionBackend(ThreadPoolExecutor(1)),
                                       work_dir=tmp_path)
    try:
        @flow.function_task
        def occupy() -> None:
            time.sleep(1.0)  # simulated work that holds the only thread

        @flow.function_task(timeout=0.5)
        def quick() -> str:
            return "in time"

        first = occupy()
        assert await quick() == "in time"  # waited ~1 s for the thread, ran in no time
        await first
    finally:
        await flow.shutdown()


# -- process pools: the worker is killed, the others run again on a new pool ----------------


@pytest.mark.parametrize("mode", ["processes"])
async def test_cancelling_a_process_task_kills_its_worker_only_it_is_lost(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    doomed_pipe, bystander_pipe = fifo(tmp_path / "doomed"), fifo(tmp_path / "bystander")
    doomed = flow.function_task(send_pid_then_work_async)(doomed_pipe, 3600)
    bystander = flow.function_task(work_once)(str(tmp_path / "marker"), bystander_pipe)
    doomed_pid, bystander_pid = int(await receive(doomed_pipe)), int(await receive(bystander_pipe))
    assert doomed_pid != bystander_pid

    doomed.cancel()
    await exited(doomed_pid)
    await exited(bystander_pid)  # a broken pool takes every worker with it
    assert await bystander == "ran again", "the bystander must run again on the new pool"
    assert doomed.cancelled()
    assert await flow.function_task(abs)(-3) == 3  # the new pool works


@pytest.mark.parametrize("mode", ["processes"])
async def test_a_process_task_past_its_timeout_is_killed(flow: WorkflowEngine,
                                                         tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "pid")
    slow = flow.function_task(timeout=0.5)(send_pid_then_work)(pipe, 3600)
    pid = int(await receive(pipe))
    with pytest.raises(TaskTimeoutError, match=r"'send_pid_then_work' exceeded its timeout"):
        await slow
    await exited(pid)
    assert not alive(pid)
    assert await flow.function_task(abs)(-4) == 4
