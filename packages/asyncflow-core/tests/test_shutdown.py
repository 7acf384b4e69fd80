"""Issue 2, point 7: shutdown is idempotent, concurrent-safe, callable from inside a task or a
block, bounded in time, leaves no future pending, and closes the engine to new work."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from loop_backend import LoopBackend, record_of
from recording_observer import Observer

from asyncflow import TaskFuture, WorkflowEngine
from asyncflow.errors import EngineClosedError


async def test_shutdown_is_idempotent_and_safe_to_call_concurrently(
        observer: Observer, backend: LoopBackend) -> None:
    flow = await WorkflowEngine.create(backend=backend)
    await asyncio.gather(flow.shutdown(), flow.shutdown(), flow.shutdown())
    await flow.shutdown()
    assert flow.closed and backend.shutdown_count == 1
    assert observer.stopped == [(flow, None)]


async def test_async_with_shuts_down_when_the_body_raises(backend: LoopBackend) -> None:
    with pytest.raises(RuntimeError, match="the workflow broke"):
        async with await WorkflowEngine.create(backend=backend) as flow:
            raise RuntimeError("the workflow broke")
    assert flow.closed and backend.shutdown_count == 1


async def test_shutdown_from_inside_a_task(flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task
    async def stop_everything() -> None:
        await flow.shutdown()

    future = stop_everything()
    with pytest.raises(asyncio.CancelledError):
        await future  # the shutdown cancels the very task that asked for it
    await flow.shutdown()
    assert flow.closed and backend.shutdown_count == 1


async def test_shutdown_from_inside_a_block(flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task
    async def step() -> int:
        return 1

    @flow.block
    async def stop_halfway() -> None:
        await step()
        await flow.shutdown()

    block = stop_halfway()
    with pytest.raises(asyncio.CancelledError):
        await block
    await flow.shutdown()
    assert backend.shutdown_count == 1 and flow.counts() == {}


async def test_shutdown_leaves_no_future_pending(flow: WorkflowEngine,
                                                 backend: LoopBackend) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def running() -> None:
        started.set()
        await gate.wait()

    @flow.function_task
    async def dependent(x: object) -> None: ...

    @flow.executable_task
    async def command(x: object) -> str:
        await gate.wait()  # still building its command
        return "true"

    @flow.block
    async def group() -> None:
        await asyncio.gather(running(), dependent(running()))

    first = running()
    futures = [first, dependent(first), command(1), group()]
    await started.wait()
    futures.append(dependent(2))  # ready, in a batch not yet submitted
    await flow.shutdown()
    assert all(f.done() for f in futures) and all(f.cancelled() for f in futures)
    assert flow.counts() == {} and not flow._tasks
    assert backend.shutdown_count == 1


async def test_shutdown_is_bounded_even_when_a_block_and_a_backend_hang(
        caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    class HangingBackend(LoopBackend):
        async def shutdown(self) -> None:
            await asyncio.Event().wait()  # never returns on its own

    flow = await WorkflowEngine.create(backend=HangingBackend(), shutdown_timeout=0.1)
    started = asyncio.Event()

    @flow.block
    async def stubborn() -> str:
        started.set()
        while True:
            try:
                await release.wait()
                return "finally"
            except asyncio.CancelledError:
                continue  # ignores every cancellation

    block = stubborn()
    await started.wait()
    body = record_of(flow, block.uid).body
    caplog.set_level(logging.ERROR, logger="asyncflow.engine")
    async with asyncio.timeout(30):
        await flow.shutdown()
    assert block.cancelled()  # settled although its body is still running
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not finish within 0.1s of shutdown" in m for m in messages)
    assert any("'loop' did not shut down within 0.1s" in m for m in messages)
    release.set()
    assert body is not None and await body is None


async def test_shutdown_can_leave_the_backends_running(backend: LoopBackend) -> None:
    flow = await WorkflowEngine.create(backend=backend)
    await flow.shutdown(skip_execution_backend=True)
    assert backend.shutdown_count == 0 and not backend.closed
    await backend.close()
    assert backend.shutdown_count == 1


async def test_new_work_is_refused_after_shutdown(backend: LoopBackend) -> None:
    flow = await WorkflowEngine.create(backend=backend)

    @flow.block
    async def group() -> None: ...

    await flow.shutdown()
    with pytest.raises(EngineClosedError, match="'group'"):
        group()


async def test_a_failure_nobody_awaits_is_not_reported_as_never_retrieved(
        flow: WorkflowEngine, loop_errors: list[dict[str, Any]]) -> None:
    @flow.function_task
    async def broken() -> None:
        raise ValueError("nobody looks at this")

    @flow.function_task
    async def dependent(x: object) -> None: ...

    futures: list[TaskFuture[Any]] = [broken(), dependent(broken())]
    await asyncio.wait(futures)  # waits without retrieving the exceptions
    assert [f.state for f in futures] == ["FAILED", "FAILED"]  # read without retrieving
    del futures
    gc.collect()
    assert loop_errors == []
