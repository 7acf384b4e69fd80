"""Issue 15, point 1: every future settles at any depth and width, with nothing recursing per
task or per level: failure and cancellation down a chain of 200,000, a fan-in of 20,000,
blocks nested 500 deep failing from the bottom or cancelled from the top. On ``noop``, whose
function tasks complete at once, so the engine alone is measured; a block supplies the root
that fails or waits, since blocks run their bodies on the loop there too."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from asyncflow import TaskFuture, TaskState, WorkflowEngine
from asyncflow.errors import DependencyFailureError

CHAIN = 200_000
FAN = 20_000
DEPTH = 500
DEADLINE = 90.0  # seconds for the last future; the settling itself takes a few


async def settled(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Wait, with a deadline, until every one of ``futures`` is done."""
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait(futures)


def chain(flow: WorkflowEngine, root: TaskFuture[Any], length: int) -> list[TaskFuture[Any]]:
    @flow.function_task
    async def link(x: object) -> object:
        return x

    futures = [root]
    for _ in range(length - 1):
        futures.append(link(futures[-1]))
    return futures


async def closes_clean(flow: WorkflowEngine) -> None:
    await flow.shutdown()
    assert list(flow.tasks()) == []


async def test_a_chain_of_200k_whose_root_fails_fails_throughout(
        noop_flow: WorkflowEngine) -> None:
    gate = asyncio.Event()

    @noop_flow.block
    async def root() -> None:
        await gate.wait()
        raise ValueError("boom")

    futures = chain(noop_flow, root(), CHAIN)
    gate.set()
    await settled(futures[-1:])
    assert isinstance(futures[0].exception(), ValueError)
    root_task = f"'root' ({futures[0].uid})"
    for future in futures[1:]:
        error = future.exception()
        assert isinstance(error, DependencyFailureError), future
        assert error.root_task == root_task and isinstance(error.root_cause, ValueError)
        assert future.state is TaskState.FAILED
    assert str(futures[-1].exception()).startswith(
        "Cannot execute 'link' due to dependency failure")
    await closes_clean(noop_flow)


async def test_a_chain_of_200k_whose_root_is_cancelled_is_cancelled_throughout(
        noop_flow: WorkflowEngine) -> None:
    started = asyncio.Event()

    @noop_flow.block
    async def root() -> None:
        started.set()
        await asyncio.Event().wait()

    futures = chain(noop_flow, root(), CHAIN)
    await started.wait()
    assert futures[0].cancel()
    await settled(futures[-1:])
    assert all(f.cancelled() and f.state is TaskState.CANCELLED for f in futures)
    await closes_clean(noop_flow)


async def test_a_chain_of_200k_left_pending_is_cancelled_by_shutdown(
        noop_flow: WorkflowEngine) -> None:
    @noop_flow.block
    async def root() -> None:
        await asyncio.Event().wait()

    futures = chain(noop_flow, root(), CHAIN)
    await closes_clean(noop_flow)
    assert all(f.cancelled() for f in futures)


async def test_a_fan_in_of_20k_settles_and_fails_with_one_failed_input(
        noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def part(i: int) -> int:
        return i

    @noop_flow.function_task
    async def join(*parts: object) -> object:
        return len(parts)

    @noop_flow.block
    async def broken() -> None:
        raise ValueError("one bad part")

    parts = [part(i) for i in range(FAN)]
    whole = join(*parts)
    spoiled = join(*parts, broken())
    await settled([whole, spoiled])
    assert whole.result() == "Dummy Output"  # noop's result: the body is not run
    error = spoiled.exception()
    assert isinstance(error, DependencyFailureError)
    assert error.failed_dependencies == ["broken"]
    await closes_clean(noop_flow)


async def test_blocks_nested_500_deep_all_fail_when_the_innermost_fails(
        noop_flow: WorkflowEngine) -> None:
    blocks: list[TaskFuture[Any]] = []

    @noop_flow.block
    async def nest(depth: int) -> object:
        if depth == 0:
            raise ValueError("bottom")
        inner = nest(depth - 1)
        blocks.append(inner)
        return await inner

    top = nest(DEPTH)
    await settled([top])
    assert len(blocks) == DEPTH
    assert all(isinstance(b.exception(), ValueError) for b in [top, *blocks])
    await closes_clean(noop_flow)


async def test_blocks_nested_500_deep_cancelled_from_the_top_are_each_cancelled_once(
        noop_flow: WorkflowEngine) -> None:
    bottom = asyncio.Event()
    blocks: list[TaskFuture[Any]] = []
    cancels: dict[int, int] = {}  # depth -> how often its body was cancelled

    @noop_flow.block
    async def nest(depth: int) -> object:
        try:
            if depth == 0:
                bottom.set()
                await asyncio.Event().wait()
            inner = nest(depth - 1)
            blocks.append(inner)
            return await inner
        except asyncio.CancelledError:
            cancels[depth] = cancels.get(depth, 0) + 1
            raise

    top = nest(DEPTH)
    await bottom.wait()
    assert top.cancel()
    await settled([top, *blocks])
    assert all(b.cancelled() and b.state is TaskState.CANCELLED for b in [top, *blocks])
    assert cancels == dict.fromkeys(range(DEPTH + 1), 1)
    await closes_clean(noop_flow)


async def test_20k_released_tasks_cancelled_before_their_submit_are_withdrawn(
        noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def part(i: int) -> int:
        return i

    parts = [part(i) for i in range(FAN)]  # released: in the batch, not submitted yet
    # Last first, the worst order for a scan of the batch (quadratic: 9 s here before).
    assert all(p.cancel() for p in reversed(parts))
    assert all(p.cancelled() for p in parts)
    assert await part(-1) == "Dummy Output"  # the batch went out empty; the next one works
    await closes_clean(noop_flow)
