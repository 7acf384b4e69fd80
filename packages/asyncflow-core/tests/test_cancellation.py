"""Issue 2, point 6: cancelling a pending task, a running task, and a block."""

from __future__ import annotations

import asyncio

import pytest
from loop_backend import LoopBackend

from asyncflow import TaskFuture, TaskState, WorkflowEngine


async def cancelled(future: asyncio.Future[object]) -> bool:
    """Whether awaiting ``future`` raises CancelledError (and its state says so)."""
    with pytest.raises(asyncio.CancelledError):
        await future
    return future.cancelled() and getattr(future, "state", "CANCELLED") == "CANCELLED"


async def test_cancelling_a_pending_task_stops_it_before_it_runs(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    @flow.function_task
    async def upstream() -> None:
        await gate.wait()

    @flow.function_task
    async def waiting(x: object) -> None:
        ran.append("waiting")

    first = upstream()
    future = waiting(first)
    assert future.cancel() and await cancelled(future)
    gate.set()
    await first
    assert ran == [] and [s.name for s in backend.specs] == ["upstream"]
    assert backend.cancelled == []  # it never reached the backend: nothing to ask


async def test_cancelling_before_the_batch_goes_out_never_submits_it(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task
    async def quick(x: int) -> int:
        return x

    kept, dropped = quick(1), quick(2)
    dropped.cancel()
    assert await kept == 1 and await cancelled(dropped)
    assert [s.uid for s in backend.specs] == [kept.uid] and backend.cancelled == []


async def test_cancelling_a_running_task_asks_its_backend(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def long() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stopped.set()

    future = long()
    await started.wait()
    assert future.state == TaskState.RUNNING
    assert future.cancel() and await cancelled(future)
    await stopped.wait()  # the backend stopped the body
    assert backend.cancelled == [future.uid]


async def test_cancelling_a_finished_task_changes_nothing(noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def done() -> None: ...

    future = done()
    assert await future == "Dummy Output"
    assert not future.cancel() and future.result() == "Dummy Output"
    assert future.state == TaskState.DONE


def test_cancel_is_a_method_of_the_future_class_not_a_patch() -> None:
    assert "cancel" in vars(TaskFuture) and issubclass(TaskFuture, asyncio.Future)


async def test_cancelling_a_block_cancels_its_body_and_members_nested_too(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    running: dict[str, asyncio.Event] = {"outer": asyncio.Event(), "inner": asyncio.Event()}
    members: dict[str, TaskFuture[object]] = {}
    body_cancelled: list[str] = []

    @flow.function_task
    async def work(which: str) -> None:
        running[which].set()
        await asyncio.Event().wait()  # until cancelled

    @flow.block
    async def inner() -> None:
        members["inner task"] = work("inner")
        try:
            await members["inner task"]
        except asyncio.CancelledError:
            body_cancelled.append("inner")
            raise

    @flow.block
    async def outer() -> None:
        members["outer task"] = work("outer")
        members["inner block"] = inner()
        try:
            await asyncio.gather(members["outer task"], members["inner block"])
        except asyncio.CancelledError:
            body_cancelled.append("outer")
            raise

    block = outer()
    await running["outer"].wait()
    await running["inner"].wait()
    assert block.cancel() and await cancelled(block)
    for name, member in members.items():
        assert await cancelled(member), name
    assert sorted(body_cancelled) == ["inner", "outer"]
    assert sorted(backend.cancelled) == sorted([members["outer task"].uid,
                                                members["inner task"].uid])
    assert flow.counts() == {}


async def test_cancelling_a_block_still_waiting_on_its_dependencies(
        flow: WorkflowEngine) -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    @flow.function_task
    async def upstream() -> int:
        await gate.wait()
        return 1

    @flow.block
    async def later(x: int) -> None:
        ran.append("body")

    first = upstream()
    block = later(first)
    dependent = later(block)
    assert block.cancel() and await cancelled(block) and await cancelled(dependent)
    gate.set()
    assert await first == 1 and ran == []


async def test_cancelling_a_block_before_its_body_first_runs(flow: WorkflowEngine) -> None:
    """A block without dependencies gets its body task at the call; cancelled before that
    task's first step, the body never runs a line, so cancel() itself settles the block."""
    ran: list[str] = []

    @flow.block
    async def instant() -> None:
        ran.append("body")

    block = instant()
    dependent = instant(block)
    assert block.cancel("not needed")
    assert block.cancelled() and block.state == TaskState.CANCELLED
    assert await cancelled(dependent)
    assert ran == [] and flow.counts() == {}


async def test_a_block_awaiting_a_cancelled_member_is_cancelled_not_stuck(
        flow: WorkflowEngine) -> None:
    started = asyncio.Event()
    member: list[TaskFuture[object]] = []

    @flow.function_task
    async def long() -> None:
        started.set()
        await asyncio.Event().wait()

    @flow.block
    async def group() -> None:
        member.append(long())
        await member[0]

    block = group()
    await started.wait()
    member[0].cancel()
    assert await cancelled(block)


async def test_the_cancel_message_reaches_the_awaiter_and_dependents_say_why(
        flow: WorkflowEngine) -> None:
    gate = asyncio.Event()

    @flow.function_task
    async def held() -> None:
        await gate.wait()

    @flow.function_task
    async def after(x: object) -> None: ...

    upstream = held()
    pending = after(held())
    dependent = after(pending)
    pending.cancel("not needed any more")
    with pytest.raises(asyncio.CancelledError) as first:
        await pending
    with pytest.raises(asyncio.CancelledError) as second:
        await dependent
    assert first.value.args == ("not needed any more",)
    assert second.value.args == (f"its dependency 'after' ({pending.uid}) was cancelled",)
    gate.set()
    await upstream
