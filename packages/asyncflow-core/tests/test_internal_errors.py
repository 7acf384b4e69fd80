"""Issue 15, point 2: an internal error never loses a future. Faults are injected through the
public seams (a backend subclass that misreports or whose failure cannot be described, an
observer plugin that raises, a low recursion limit); the task they touch fails with
EngineInternalError carrying the cause, the fault is logged once with its traceback, and the
engine goes on with the rest."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from loop_backend import LoopBackend

import asyncflow
from asyncflow import TaskSpec, TaskState, TaskUpdate, WorkflowEngine
from asyncflow.errors import BackendError, DependencyFailureError, EngineInternalError

DEADLINE = 30.0


async def outcome(future: asyncio.Future[Any]) -> BaseException | None:
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait([future])
    return future.exception()


async def still_works(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def fine(x: int) -> int:
        return x + 1

    async with asyncio.timeout(DEADLINE):
        assert await fine(fine(1)) in (3, "Dummy Output")


def internal_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "internal error" in r.getMessage()]


class Misreporting(LoopBackend):
    """Reports a task named ``bad`` with an update the engine cannot apply."""

    name = "misreporting"

    def __init__(self, update: Any) -> None:
        super().__init__()
        self.update = update

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        good = [spec for spec in tasks if spec.name != "bad"]
        for spec in tasks:
            if spec.name == "bad":
                self.report(TaskUpdate(spec.uid, *self.update))
        await super().submit(good)


@pytest.mark.parametrize("update", [
    (TaskState.FAILED, None, "not an exception"),  # set_exception() refuses it
    ("DONE",),  # a plain string, not the TaskState member
], ids=["error-not-an-exception", "state-not-a-taskstate"])
async def test_a_report_the_engine_cannot_apply_fails_its_task_as_internal(
        update: tuple[Any, ...], caplog: pytest.LogCaptureFixture) -> None:
    async with WorkflowEngine.create(backend=Misreporting(update)) as flow:
        @flow.function_task
        async def bad() -> None: ...

        @flow.function_task
        async def after(x: object) -> None: ...

        broken = bad()
        dependent = after(broken)
        error = await outcome(broken)
        assert isinstance(error, EngineInternalError)
        assert "internal error" in str(error) and broken.uid in str(error)
        assert isinstance(error.__cause__, TypeError | ValueError)
        assert broken.state is TaskState.FAILED
        assert isinstance(await outcome(dependent), DependencyFailureError)
        [logged] = internal_logs(caplog)
        assert logged.exc_info is not None and logged.exc_info[1] is error.__cause__
        await still_works(flow)
        assert len(internal_logs(caplog)) == 1


async def test_a_report_from_a_worker_thread_the_engine_cannot_apply_is_not_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    class FromThread(LoopBackend):
        name = "from_thread"

        async def submit(self, tasks: Sequence[TaskSpec]) -> None:
            for spec in tasks:  # through call_soon_threadsafe, where a raise reaches no one
                await asyncio.to_thread(
                    self.report, TaskUpdate(spec.uid, "FAILED"))  # type: ignore[arg-type]

    async with WorkflowEngine.create(backend=FromThread()) as flow:
        @flow.function_task
        async def task() -> None: ...

        error = await outcome(task())
        assert isinstance(error, EngineInternalError)
        assert len(internal_logs(caplog)) == 1


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be described")


class SubmitRaisesUnprintable(LoopBackend):
    name = "submit_raises_unprintable"

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        if any(spec.name == "bad" for spec in tasks):
            raise UnprintableError
        await super().submit(tasks)


async def test_a_submit_whose_error_cannot_be_described_fails_its_batch_as_internal(
        caplog: pytest.LogCaptureFixture) -> None:
    async with WorkflowEngine.create(backend=SubmitRaisesUnprintable()) as flow:
        @flow.function_task
        async def bad() -> None: ...

        error = await outcome(bad())
        assert isinstance(error, EngineInternalError)
        assert isinstance(error.__cause__, RuntimeError)
        assert len(internal_logs(caplog)) == 1
        await still_works(flow)  # the submitter lives on: the backend's next batch goes out


async def test_a_submit_that_raises_is_logged_and_fails_its_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    class SubmitRaises(LoopBackend):
        name = "submit_raises"

        async def submit(self, tasks: Sequence[TaskSpec]) -> None:
            if any(spec.name == "bad" for spec in tasks):
                raise RecursionError("deep inside the backend")
            await super().submit(tasks)

    caplog.set_level(logging.ERROR, logger="asyncflow.engine")
    async with WorkflowEngine.create(backend=SubmitRaises()) as flow:
        @flow.function_task
        async def bad() -> None: ...

        error = await outcome(bad())
        assert isinstance(error, BackendError) and isinstance(error.__cause__, RecursionError)
        [logged] = [r for r in caplog.records if "failed to submit" in r.getMessage()]
        assert logged.exc_info is not None and logged.exc_info[1] is error.__cause__
        await still_works(flow)


class Broken:
    """An observer plugin whose state hook raises, as a buggy progress display might."""

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, new: TaskState) -> None:
        raise RecursionError(f"observer broken on {new}")


@pytest.fixture
def broken_observer() -> Iterator[None]:
    plugin = Broken()
    asyncflow.register(plugin)
    yield
    asyncflow.plugin_manager().unregister(plugin)


@pytest.mark.usefixtures("broken_observer")
async def test_a_raising_observer_costs_no_future(caplog: pytest.LogCaptureFixture) -> None:
    async with WorkflowEngine.create(backend=LoopBackend()) as flow:
        @flow.function_task
        async def boom() -> None:
            raise ValueError("boom")

        @flow.function_task
        async def after(x: object) -> None: ...

        failed = after(boom())
        assert isinstance(await outcome(failed), DependencyFailureError)
        await still_works(flow)
    assert any("failed in" in r.getMessage() for r in caplog.records)  # logged, not raised


async def test_a_deep_chain_settles_under_a_recursion_limit_lower_than_its_depth(
        noop_flow: WorkflowEngine) -> None:
    gate = asyncio.Event()

    @noop_flow.block
    async def root() -> None:
        await gate.wait()
        raise ValueError("boom")

    @noop_flow.function_task
    async def link(x: object) -> object:
        return x

    futures = [root()]
    for _ in range(5_000):
        futures.append(link(futures[-1]))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # far below the chain's depth; the loop's own frames fit
    try:
        gate.set()
        last = await outcome(futures[-1])
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(last, DependencyFailureError)
    assert all(isinstance(f.exception(), DependencyFailureError) for f in futures[1:])
