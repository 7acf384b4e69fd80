"""Where bodies run in each mode, what comes back, and how the backend is chosen."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from concurrent_support import make_backend

import asyncflow
from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend, LocalExecutionBackend
from asyncflow_concurrent._worker import RemoteTraceback


async def test_sync_and_async_bodies_closures_and_dependencies(flow: WorkflowEngine) -> None:
    factor = 10  # captured: closures must work in every mode, process pools included

    @flow.function_task
    async def add(x: int) -> int:
        await asyncio.sleep(0)
        return x + factor

    @flow.function_task
    def times(x: int) -> int:
        return x * factor

    assert await times(add(1)) == 110
    assert await asyncio.gather(*(add(i) for i in range(20))) == [i + 10 for i in range(20)]


async def test_loop_mode_async_bodies_on_the_loop_sync_bodies_off_it(tmp_path: Path) -> None:
    async with await WorkflowEngine.create(backend=make_backend("loop"),
                                           work_dir=tmp_path) as flow:
        @flow.function_task
        async def where_async() -> tuple[int, asyncio.AbstractEventLoop]:
            return threading.get_ident(), asyncio.get_running_loop()

        @flow.function_task
        def where_sync() -> int:
            return threading.get_ident()

        thread, loop = await where_async()
        assert thread == threading.get_ident() and loop is flow.loop
        assert await where_sync() != threading.get_ident()


async def test_thread_mode_one_worker_thread_per_task_each_with_a_persistent_loop(
        tmp_path: Path) -> None:
    lock = threading.Lock()
    running = peak = 0

    flow = await WorkflowEngine.create(backend=ConcurrentExecutionBackend(ThreadPoolExecutor(2)),
                                       work_dir=tmp_path)

    @flow.function_task
    async def visit() -> tuple[int, asyncio.AbstractEventLoop, int]:
        nonlocal running, peak
        loop = asyncio.get_running_loop()
        with lock:
            running += 1
            peak = max(peak, running)
            loop.visits = getattr(loop, "visits", 0) + 1  # type: ignore[attr-defined]
            visits = loop.visits  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)  # simulated work
        with lock:
            running -= 1
        return threading.get_ident(), loop, visits

    @flow.function_task
    def sync_visit() -> int:
        return threading.get_ident()

    visits = await asyncio.gather(*(visit() for _ in range(8)))
    threads = {thread for thread, _, _ in visits}
    loops = {thread: loop for thread, loop, _ in visits}
    assert peak <= 2, "a task must hold its worker thread while it runs"
    assert len(threads) <= 2 and threading.get_ident() not in threads
    assert all(loop is loops[thread] for thread, loop, _ in visits), "one loop per thread"
    assert flow.loop not in loops.values()
    assert max(n for _, _, n in visits) >= 4, "a thread's loop serves task after task"
    assert await sync_visit() in threads
    await flow.shutdown()
    assert all(loop.is_closed() for loop in loops.values()), "loops close with the backend"


async def test_process_mode_workers_keep_one_loop_each(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(
        backend=ConcurrentExecutionBackend(ProcessPoolExecutor(1)), work_dir=tmp_path)
    try:
        @flow.function_task
        async def visit() -> tuple[int, int]:
            loop = asyncio.get_running_loop()
            loop.visits = getattr(loop, "visits", 0) + 1  # type: ignore[attr-defined]
            return os.getpid(), loop.visits  # type: ignore[attr-defined]

        @flow.function_task
        def sync_pid() -> int:
            return os.getpid()

        first, second, third = [await visit() for _ in range(3)]
        assert first[0] == second[0] == third[0] != os.getpid()
        assert [first[1], second[1], third[1]] == [1, 2, 3], "one loop for the worker's life"
        assert await sync_pid() == first[0]
    finally:
        await flow.shutdown()


async def test_exceptions_keep_their_type_and_traceback(flow: WorkflowEngine, mode: str) -> None:
    class BoomError(Exception):  # a class from a closure: it must survive a process boundary
        pass

    @flow.function_task
    def explode_sync() -> None:
        raise BoomError("sync")

    @flow.function_task
    async def explode_async() -> None:
        await asyncio.sleep(0)
        raise BoomError("async")

    for task, text in ((explode_sync, "sync"), (explode_async, "async")):
        with pytest.raises(BoomError, match=text) as raised:
            await task()
        shown = "".join(traceback.format_exception(raised.value))
        assert task.__name__ in shown, shown
        if mode == "processes":
            assert isinstance(raised.value.__cause__, RemoteTraceback)


async def test_process_mode_unpicklable_arguments_and_values_fail_the_task(
        tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=make_backend("processes"), work_dir=tmp_path)
    try:
        @flow.function_task
        def takes(lock: object) -> None:
            pass

        @flow.function_task
        def gives() -> object:
            return threading.Lock()

        with pytest.raises(TypeError, match=r"task 'takes' \(task\.\d+\) cannot be sent"):
            await takes(threading.Lock())
        with pytest.raises(TypeError, match="return value"):
            await gives()
        assert await flow.function_task(lambda: "still fine")() == "still fine"
    finally:
        await flow.shutdown()


# -- the backend's names and options --------------------------------------------------------


def test_registered_as_concurrent_and_local() -> None:
    from radical.asyncflow import ConcurrentExecutionBackend as FromRadical

    assert LocalExecutionBackend is ConcurrentExecutionBackend is FromRadical
    assert asyncflow.LocalExecutionBackend is ConcurrentExecutionBackend
    assert asyncflow.registry().get("local") is ConcurrentExecutionBackend
    assert asyncflow.registry().info("local").name == "concurrent"
    assert asyncflow.registry().info("concurrent").distribution == "asyncflow-concurrent"


@pytest.mark.parametrize(("arguments", "error", "match"), [
    ((object(),), TypeError, "ThreadPoolExecutor or a ProcessPoolExecutor"),
    (("fibers",), ValueError, "'threads', 'processes'"),
    ((), ValueError, "max_workers must be a whole number"),
])
def test_bad_options_are_refused(arguments: tuple[object, ...], error: type[Exception],
                                 match: str) -> None:
    with pytest.raises(error, match=match):
        ConcurrentExecutionBackend(*arguments, max_workers=0)  # type: ignore[arg-type]


def test_max_workers_is_refused_with_an_executor_instance() -> None:
    pool = ThreadPoolExecutor(1)
    try:
        with pytest.raises(TypeError, match="has its own"):
            ConcurrentExecutionBackend(pool, max_workers=2)
    finally:
        pool.shutdown()


@pytest.mark.parametrize(("options", "mode"), [
    ({}, "loop"),
    ({"max_workers": 2}, "loop"),
    ({"executor": "threads", "max_workers": 3}, "threads"),
    ({"executor": "processes", "max_workers": 1}, "processes"),
])
async def test_built_by_name_with_options(options: dict[str, object], mode: str,
                                          tmp_path: Path) -> None:
    async with await WorkflowEngine.create(backend="local", work_dir=tmp_path,
                                           **options) as flow:
        backend = flow.backends["concurrent"]
        assert isinstance(backend, ConcurrentExecutionBackend) and backend.mode == mode
        assert await flow.function_task(lambda x: x + 1)(1) == 2


async def test_executor_keyword_and_the_seed_spelling(tmp_path: Path) -> None:
    backend = await ConcurrentExecutionBackend(executor=ThreadPoolExecutor(1))
    assert backend.mode == "threads" and backend.started
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    started = time.monotonic()
    assert await flow.function_task(time.monotonic)() >= started
    await flow.shutdown()
    assert backend.closed
