"""Issue 2, point 5: a failure stays with its task and its dependents; bad input fails only
the task it belongs to, with an error naming it, and the engine goes on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest
from loop_backend import FunctionsOnlyBackend, LoopBackend

from asyncflow import TaskFuture, TaskSpec, TaskState, WorkflowEngine
from asyncflow.errors import (
    BackendError,
    CapabilityError,
    DependencyFailureError,
    EngineClosedError,
    UnknownBackendError,
)


async def still_works(flow: WorkflowEngine) -> None:
    """The engine runs a fresh task (and a dependent) after the bad one."""

    @flow.function_task
    async def fine(x: int) -> int:
        return x + 1

    assert await fine(fine(1)) == 3


async def failure_of(awaitable: Awaitable[Any]) -> BaseException:
    try:
        await awaitable
    except Exception as exc:
        return exc
    raise AssertionError(f"{awaitable!r} did not fail")


# -- dependency failure ----------------------------------------------------------------------


async def test_a_dependent_of_a_failed_task_is_not_run(flow: WorkflowEngine) -> None:
    ran: list[str] = []
    original = ValueError("bad input")

    @flow.function_task
    async def a() -> None:
        raise original

    @flow.function_task
    async def b(x: object) -> None:
        ran.append("b")

    first = a()
    error = await failure_of(b(first))
    assert isinstance(error, DependencyFailureError) and ran == []
    assert error.failed_dependencies == ["a"]
    assert error.root_cause is original and error.__cause__ is original
    assert str(error).startswith("Cannot execute 'b' due to dependency failure: ")  # upstream's
    assert str(error).endswith(f"'a' ({first.uid}) failed with ValueError: bad input")
    assert await failure_of(first) is original
    await still_works(flow)


async def test_a_chain_names_the_task_that_failed_first(flow: WorkflowEngine) -> None:
    original = KeyError("missing")

    @flow.function_task
    async def a() -> None:
        raise original

    @flow.function_task
    async def b(x: object) -> None: ...

    @flow.function_task
    async def c(x: object) -> None: ...

    first = a()
    error = await failure_of(c(b(first)))
    assert isinstance(error, DependencyFailureError)
    assert error.failed_dependencies == ["b"]  # the direct dependency that failed
    assert error.root_cause is original and error.__cause__ is original
    assert error.root_task is not None and "'a'" in error.root_task
    assert first.uid in str(error) and "KeyError" in str(error)


async def test_dependencies_that_already_failed_are_all_named(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def broken(name: str) -> None:
        raise RuntimeError(name)

    @flow.function_task
    async def join(*parts: object) -> None: ...

    x, y = broken("x"), broken("y")
    await asyncio.wait([x, y])
    error = await failure_of(join(x, y))
    assert isinstance(error, DependencyFailureError)
    assert error.failed_dependencies == ["broken", "broken"]
    assert str(error.root_cause) == "x"


async def test_a_block_depending_on_a_failed_task_fails_and_its_body_never_runs(
        flow: WorkflowEngine) -> None:
    ran: list[str] = []

    @flow.function_task
    async def broken() -> None:
        raise OSError("disk full")

    @flow.block
    async def later(x: object) -> None:
        ran.append("later")

    error = await failure_of(later(broken()))
    assert isinstance(error, DependencyFailureError) and isinstance(error.root_cause, OSError)
    assert ran == []


async def test_a_block_fails_with_the_error_its_body_raised(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def broken() -> None:
        raise ZeroDivisionError("inside")

    @flow.block
    async def group() -> None:
        await broken()

    future = group()
    error = await failure_of(future)
    assert isinstance(error, ZeroDivisionError) and future.state == TaskState.FAILED


async def test_a_task_error_keeps_its_type(flow: WorkflowEngine) -> None:
    class CustomError(Exception):
        pass

    @flow.function_task
    def broken() -> None:
        raise CustomError("mine")

    assert isinstance(await failure_of(broken()), CustomError)
    await still_works(flow)


# -- cancelled dependencies ------------------------------------------------------------------


async def test_a_cancelled_dependency_cancels_its_dependents(flow: WorkflowEngine) -> None:
    ran: list[str] = []
    gate = asyncio.Event()

    @flow.function_task
    async def held() -> None:
        await gate.wait()

    @flow.function_task
    async def dependent(x: object) -> None:
        ran.append("dependent")

    upstream = held()
    child = dependent(upstream)
    grandchild = dependent(child)
    upstream.cancel()
    for future in (upstream, child, grandchild):
        with pytest.raises(asyncio.CancelledError):
            await future
        assert future.state == TaskState.CANCELLED
    late = dependent(upstream)  # depending on a task that is already cancelled
    assert late.cancelled() and late.state == TaskState.CANCELLED
    assert ran == []
    await still_works(flow)


# -- bad input, one test each ----------------------------------------------------------------


async def test_a_block_that_is_not_async_def_is_refused_at_decoration(
        flow: WorkflowEngine) -> None:
    def plain_block() -> None: ...

    with pytest.raises(TypeError, match="block 'plain_block' must be an `async def`"):
        flow.block(plain_block)
    with pytest.raises(TypeError, match="plain_block"):
        flow.block()(plain_block)
    await still_works(flow)


@pytest.mark.parametrize("decorator", ["function_task", "executable_task", "block"])
async def test_decorating_something_not_callable_is_refused_at_decoration(
        flow: WorkflowEngine, decorator: str) -> None:
    with pytest.raises(TypeError, match=f"@{decorator} needs a function, got 'not a function'"):
        getattr(flow, decorator)("not a function")
    with pytest.raises(TypeError, match=f"@{decorator} needs a function, got 42"):
        getattr(flow, decorator)(timeout=1)(42)
    await still_works(flow)


@pytest.mark.parametrize("command", [None, "", "   ", b"echo bytes"])
async def test_an_executable_body_must_return_a_non_empty_string(
        flow: WorkflowEngine, backend: LoopBackend, command: object) -> None:
    @flow.executable_task
    async def bad_command() -> object:
        return command

    future = bad_command()
    error = await failure_of(future)
    assert isinstance(error, ValueError)
    assert "'bad_command'" in str(error) and "non-empty command string" in str(error)
    assert repr(command) in str(error)
    assert future.state == TaskState.FAILED and backend.specs == []
    await still_works(flow)


async def test_an_unknown_routing_name_fails_that_task(flow: WorkflowEngine) -> None:
    @flow.function_task(backend="nowhere")
    async def lost() -> None: ...

    error = await failure_of(lost())
    assert isinstance(error, UnknownBackendError) and isinstance(error, LookupError)
    assert "'lost'" in str(error) and "'nowhere'" in str(error) and "'loop'" in str(error)
    await still_works(flow)


async def test_a_capability_the_backend_lacks_fails_that_task() -> None:
    backend = FunctionsOnlyBackend()
    async with await WorkflowEngine.create(backend=backend) as flow:
        @flow.executable_task
        async def command() -> str:
            return "true"

        @flow.function_task(timeout=5)
        async def timed() -> None: ...

        error = await failure_of(command())
        assert isinstance(error, CapabilityError)
        assert "'command'" in str(error) and "executable_tasks" in str(error)
        assert "'functions_only'" in str(error)
        error = await failure_of(timed())
        assert isinstance(error, CapabilityError) and "timeouts" in str(error)
        assert backend.specs == []  # refused before submission
        await still_works(flow)


async def test_a_task_after_shutdown_is_refused() -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend())

    @flow.function_task
    async def late() -> None: ...

    await flow.shutdown()
    with pytest.raises(EngineClosedError, match=f"'late'.*{flow.uid}.*shut down"):
        late()
    async with await WorkflowEngine.create(backend=LoopBackend()) as fresh:
        await still_works(fresh)


async def test_a_task_description_that_is_not_a_dict_is_refused(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def described() -> None: ...

    with pytest.raises(TypeError, match=r"'described'.*task_description must be a dict, not list"):
        described(task_description=["ranks", 2])
    with pytest.raises(TypeError, match=r"'defined'.*must be a dict, not str"):
        @flow.function_task(task_description="ranks=2")
        async def defined() -> None: ...
    with pytest.raises(TypeError, match=r"'by_default'.*must be a dict, not int"):
        @flow.function_task
        async def by_default(task_description: int = 3) -> None: ...
    await still_works(flow)


async def test_bad_decorator_options_name_the_task(flow: WorkflowEngine) -> None:
    with pytest.raises(ValueError, match=r"'negative'.*retries="):
        @flow.function_task(retries=-1)
        async def negative() -> None: ...
    with pytest.raises(TypeError) as caught:
        @flow.function_task(retires=1)
        async def typo() -> None: ...
    message = str(caught.value)
    assert message.startswith("@function_task on 'typo': unknown option(s) ['retires']")
    assert message.count("@function_task") == 1  # one prefix, naming decorator and task
    await still_works(flow)



async def test_a_future_of_another_event_loop_fails_that_task(flow: WorkflowEngine) -> None:
    other_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=other_loop.run_forever, name="other loop")
    thread.start()

    async def foreign_task() -> tuple[WorkflowEngine, TaskFuture[Any]]:
        engine = await WorkflowEngine.create(backend="noop")

        @engine.function_task
        async def abroad() -> None: ...

        return engine, abroad()

    def in_other_loop(coro: Any) -> Any:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, other_loop))

    try:
        other, foreign = await in_other_loop(foreign_task())

        @flow.function_task
        async def local(x: object) -> None: ...

        future = local(foreign)
        error = await failure_of(future)
        assert isinstance(error, ValueError)
        assert "'local'" in str(error) and "another event loop" in str(error)
        await in_other_loop(other.shutdown())
    finally:
        other_loop.call_soon_threadsafe(other_loop.stop)
        await asyncio.to_thread(thread.join, 10)
        other_loop.close()
    await still_works(flow)


class ExplodingBackend(LoopBackend):
    """A backend whose ``submit`` raises for batches holding a task named ``explode``."""

    name = "exploding"

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        if any(spec.name == "explode" for spec in tasks):
            raise ConnectionError("scheduler unreachable")
        await super().submit(tasks)


async def test_a_submit_that_raises_fails_its_batch_only() -> None:
    async with await WorkflowEngine.create(backend=ExplodingBackend()) as flow:
        @flow.function_task
        async def explode() -> None: ...

        error = await failure_of(explode())
        assert isinstance(error, BackendError) and isinstance(error.__cause__, ConnectionError)
        assert "'explode'" in str(error) and "'exploding'" in str(error)
        await still_works(flow)
