"""One submitter per backend, as a backend author sees it: a slow ``submit`` holds up only its
own backend; tasks released while a submit is in flight go out together as the next batch,
never concurrently with it; a submit that raises fails its batch only; shutdown is bounded by
``shutdown_timeout`` even when a submit never returns, and leaves no asyncio task behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from loop_backend import LoopBackend

from asyncflow import TaskFuture, TaskSpec, WorkflowEngine
from asyncflow.errors import BackendError

TIMEOUT = 30  # a safety net against a hang; no test comes near it


class Hold:
    """Stops one ``submit`` at the door: ``entered`` is set when it arrives, ``release`` lets it
    go on."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


class GatedBackend(LoopBackend):
    """A :class:`LoopBackend` whose submits can be held (one :class:`Hold` per submit, in
    order) or refused (a batch holding the task named ``refuse`` raises ``refusal``).

    It logs every submit's entry and exit and counts how many are in flight at once.
    """

    name = "gated"

    def __init__(self, *holds: Hold, refuse: str | None = None) -> None:
        super().__init__()
        self.holds = deque(holds)
        self.refuse = refuse
        self.refusal = RuntimeError("submission refused")
        self.log: list[tuple[str, list[str]]] = []  # ("enter" | "exit", task names)
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled_submits = 0

    @property
    def seen(self) -> list[list[str]]:
        """The task names of every submit, in the order they arrived."""
        return [names for event, names in self.log if event == "enter"]

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        names = [spec.name for spec in tasks]
        self.log.append(("enter", names))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.holds:
                hold = self.holds.popleft()
                hold.entered.set()
                await hold.release.wait()
            if self.refuse in names:
                raise self.refusal
            await super().submit(tasks)
        except asyncio.CancelledError:
            self.cancelled_submits += 1
            raise
        finally:
            self.in_flight -= 1
            self.log.append(("exit", names))


async def test_a_slow_submit_does_not_hold_up_another_backend() -> None:
    hold = Hold()
    gated, other = GatedBackend(hold), LoopBackend()
    async with await WorkflowEngine.create(backend=[gated, other]) as flow:
        @flow.function_task
        async def slow() -> str:
            return "slow"

        @flow.function_task(backend="loop")
        async def quick(x: int) -> int:
            return x + 1

        async with asyncio.timeout(TIMEOUT):
            held = slow()
            await hold.entered.wait()
            assert await quick(quick(1)) == 3  # two submits to "loop", one after the other
            assert gated.in_flight == 1 and not held.done()  # "gated"'s submit is still blocked
            hold.release.set()
            assert await held == "slow"
    assert [[s.name for s in batch] for batch in other.batches] == [["quick"], ["quick"]]
    assert gated.seen == [["slow"]]


async def test_tasks_released_during_a_submit_go_out_together_after_it() -> None:
    first, second = Hold(), Hold()
    gated = GatedBackend(first, second)
    async with await WorkflowEngine.create(backend=[gated, LoopBackend()]) as flow:
        @flow.function_task
        async def step(label: str) -> str:
            return label

        @flow.function_task(backend="loop")
        async def elsewhere() -> str:
            return "c"

        async with asyncio.timeout(TIMEOUT):
            a = step("a")
            await first.entered.wait()
            b, d = step("b"), step("d")  # released in this loop iteration
            made = elsewhere()
            c = step(made)  # released in a later iteration, when `made` finishes on "loop"
            assert await made == "c"
            assert gated.log == [("enter", ["step"])]  # all three wait for the submit in flight
            first.release.set()
            await second.entered.wait()
            e = step("e")  # released while the second submit is in flight
            second.release.set()
            assert list(await asyncio.gather(a, b, c, d, e)) == ["a", "b", "c", "d", "e"]
    # Released over two loop iterations, b, c and d still went out in one submit.
    assert [sorted(spec.args[0] for spec in batch) for batch in gated.batches] == [
        ["a"], ["b", "c", "d"], ["e"]]
    # Each submit started only after the previous one returned.
    assert [event for event, _ in gated.log] == ["enter", "exit"] * 3
    assert gated.most_in_flight == 1


async def test_shutdown_does_not_wait_forever_for_a_submit_that_never_returns(
        caplog: pytest.LogCaptureFixture) -> None:
    hold = Hold()  # never released
    gated = GatedBackend(hold)
    flow = await WorkflowEngine.create(backend=gated, shutdown_timeout=0.1)

    @flow.function_task
    async def step(label: str) -> str:
        return label

    @flow.function_task
    async def after(x: str) -> str:
        return x

    stuck = step("stuck")
    await hold.entered.wait()
    futures: list[TaskFuture[Any]] = [stuck, step("queued"), after(stuck)]
    caplog.set_level(logging.ERROR, logger="asyncflow.engine")
    async with asyncio.timeout(TIMEOUT):
        await flow.shutdown()
    assert all(f.done() for f in futures) and all(f.cancelled() for f in futures)
    messages = [r.getMessage() for r in caplog.records]
    assert any("'asyncflow submit to gated'" in m and "did not finish within 0.1s of shutdown"
               in m for m in messages), messages
    assert gated.cancelled_submits == 1 and gated.in_flight == 0  # the submit was cancelled
    assert gated.seen == [["step"]]  # the queued task never went out
    assert gated.shutdown_count == 1


async def test_a_submit_that_raises_fails_its_batch_and_the_next_batch_still_runs() -> None:
    hold = Hold()
    gated = GatedBackend(hold, refuse="doomed")
    async with await WorkflowEngine.create(backend=gated) as flow:
        @flow.function_task
        async def doomed() -> None: ...

        @flow.function_task
        async def fine(x: int) -> int:
            return x + 1

        async with asyncio.timeout(TIMEOUT):
            lost = doomed()
            await hold.entered.wait()
            waiting = fine(1)  # the next batch, released while the failing submit is in flight
            hold.release.set()
            with pytest.raises(BackendError) as caught:
                await lost
            assert await waiting == 2
            assert await fine(fine(2)) == 4  # and the batches after it
    message = str(caught.value)
    assert "backend 'gated'" in message and f"task 'doomed' ({lost.uid})" in message
    assert "submission refused" in message
    assert caught.value.__cause__ is gated.refusal
    assert gated.seen == [["doomed"], ["fine"], ["fine"], ["fine"]]


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "submit-blocked"])
async def test_shutdown_leaves_no_asyncio_task_behind(busy: bool) -> None:
    before = asyncio.all_tasks()
    hold = Hold()  # never released
    gated = GatedBackend(hold) if busy else GatedBackend()
    flow = await WorkflowEngine.create(backend=[gated, LoopBackend()], shutdown_timeout=0.1)
    never = asyncio.Event()

    @flow.function_task
    async def step(x: int) -> int:
        return x + 1

    @flow.function_task(backend="loop")
    async def waits() -> None:
        await never.wait()

    @flow.block
    async def group() -> int:
        await waits()
        return 0

    async with asyncio.timeout(TIMEOUT):
        if busy:  # a submit blocked, a task queued behind it, a task and a block running
            futures: list[TaskFuture[Any]] = [step(0), step(1), waits(), group()]
            await hold.entered.wait()
        else:  # everything finished: the submitters sleep, waiting for work
            futures = [step(step(0))]
            assert await futures[0] == 2
        await flow.shutdown()
    assert all(f.done() for f in futures)
    assert asyncio.all_tasks() == before


async def test_a_task_released_after_its_submitter_was_cancelled_does_not_raise() -> None:
    """asyncio.run() cancels every task when the main one ends without a shutdown: a retry
    timer or a late release must then find a stopped submitter, not a cancelled future."""
    flow = await WorkflowEngine.create(backend="noop")
    try:
        @flow.function_task
        async def late() -> None: ...

        await late()  # submitted, and the submitter went back to sleep in the same step
        submitter = next(iter(flow._submitters.values()))
        submitter.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await submitter.task

        future = late()  # released at once into a batch nobody sends
        assert not future.done()
    finally:
        await flow.shutdown()
    assert future.cancelled()  # shutdown settles what no backend will
