"""Issue 15, point 1, on each mode: every future settles at any depth and width. The root
(or innermost) task runs on the backend; what follows from its failure or cancellation is
the engine's, without a Python frame per level. Sizes are the same in every mode: only the
root runs in a worker, so processes cost no more than the loop here."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from concurrent_support import (
    LIMIT,
    StateWatch,
    fail_when_released,
    fifo,
    release,
    same,
    wait_for_async,
)

from asyncflow import TaskFuture, TaskState, WorkflowEngine
from asyncflow.errors import DependencyFailureError

CHAIN = 200_000
FAN = 20_000
DEPTH = 500
DEADLINE = 90.0


async def settled(*futures: asyncio.Future[Any]) -> None:
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait(futures)


def chain(flow: WorkflowEngine, root: TaskFuture[Any], length: int) -> list[TaskFuture[Any]]:
    link = flow.function_task(same)
    futures = [root]
    for _ in range(length - 1):
        futures.append(link(futures[-1]))
    return futures


async def closes_clean(flow: WorkflowEngine) -> None:
    async with asyncio.timeout(LIMIT):
        await flow.shutdown()
    assert list(flow.tasks()) == []


async def test_a_chain_of_200k_whose_root_fails_fails_throughout(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    gate = fifo(tmp_path / "gate")
    futures = chain(flow, flow.function_task(fail_when_released)(gate), CHAIN)
    await release(gate)
    await settled(futures[-1])
    assert isinstance(futures[0].exception(), ValueError)
    root_task = f"'fail_when_released' ({futures[0].uid})"
    for future in futures[1:]:
        error = future.exception()
        assert isinstance(error, DependencyFailureError) and error.root_task == root_task
    await closes_clean(flow)


async def test_a_chain_of_200k_whose_running_root_is_cancelled_is_cancelled_throughout(
        flow: WorkflowEngine, watch: StateWatch, tmp_path: Path, mode: str) -> None:
    gate = fifo(tmp_path / "gate")
    root = flow.function_task(wait_for_async)(gate)
    await watch.reached(root)
    futures = chain(flow, root, CHAIN)
    assert futures[0].cancel()
    await settled(futures[-1])
    assert all(f.cancelled() and f.state is TaskState.CANCELLED for f in futures)
    if mode != "processes":  # a process body is killed; the loop's thread read, not: end it
        await release(gate)
    await closes_clean(flow)


async def test_a_fan_in_of_20k_settles(flow: WorkflowEngine, tmp_path: Path) -> None:
    @flow.function_task
    async def join(*parts: object) -> int:
        return len(parts)

    part = flow.function_task(same)
    whole = join(*(part(i) for i in range(FAN)))
    await settled(whole)
    assert whole.result() == FAN
    await closes_clean(flow)


async def test_blocks_nested_500_deep_all_fail_when_the_innermost_task_fails(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    gate = fifo(tmp_path / "gate")
    blocks: list[TaskFuture[Any]] = []
    innermost = flow.function_task(fail_when_released)

    @flow.block
    async def nest(depth: int) -> object:
        inner = innermost(gate) if depth == 0 else nest(depth - 1)
        blocks.append(inner)
        return await inner

    top = nest(DEPTH)
    await release(gate)
    await settled(top)
    assert len(blocks) == DEPTH + 1
    assert all(isinstance(b.exception(), ValueError) for b in [top, *blocks])
    await closes_clean(flow)


async def test_blocks_nested_500_deep_cancelled_from_the_top_are_each_cancelled_once(
        flow: WorkflowEngine, watch: StateWatch, tmp_path: Path, mode: str) -> None:
    gate = fifo(tmp_path / "gate")
    blocks: list[TaskFuture[Any]] = []
    cancels: dict[int, int] = {}  # depth -> how often its body was cancelled
    bottom = asyncio.Event()  # the innermost task is called
    innermost = flow.function_task(wait_for_async)

    @flow.block
    async def nest(depth: int) -> object:
        inner = innermost(gate) if depth == 0 else nest(depth - 1)
        blocks.append(inner)
        if depth == 0:
            bottom.set()
        try:
            return await inner
        except asyncio.CancelledError:
            cancels[depth] = cancels.get(depth, 0) + 1
            raise

    top = nest(DEPTH)
    async with asyncio.timeout(LIMIT):
        await bottom.wait()
    await watch.reached(blocks[-1])
    assert top.cancel()
    await settled(top, *blocks)
    assert all(b.cancelled() and b.state is TaskState.CANCELLED for b in [top, *blocks])
    assert cancels == dict.fromkeys(range(DEPTH + 1), 1)
    if mode != "processes":
        await release(gate)
    await closes_clean(flow)
