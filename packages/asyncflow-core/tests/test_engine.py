"""Issue 2, point 2: creating an engine, the decorators and their options, the futures."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from loop_backend import LoopBackend, record_of
from recording_observer import Observer

from asyncflow import TaskFuture, TaskState, WorkflowEngine
from asyncflow.errors import TaskTimeoutError


async def test_create_starts_the_backend_and_async_with_shuts_it_down(tmp_path: Path) -> None:
    backend = LoopBackend()
    async with await WorkflowEngine.create(backend=backend, uid="run-1",
                                           work_dir=tmp_path) as flow:
        assert (flow.uid, flow.work_dir, flow.backend) == ("run-1", tmp_path, backend)
        assert backend.started and backend.started_count == 1

        @flow.function_task
        async def one() -> int:
            return 1

        assert await one() == 1
    assert flow.closed and backend.closed and backend.shutdown_count == 1
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - nothing is written unless asked for


async def test_async_with_create_needs_no_await_and_shuts_down_on_error() -> None:
    backend = LoopBackend()
    with pytest.raises(RuntimeError, match="inside the block"):
        async with WorkflowEngine.create(backend=backend) as flow:
            assert isinstance(flow, WorkflowEngine) and backend.started

            @flow.function_task
            async def two() -> int:
                return 2

            assert await two() == 2
            raise RuntimeError("inside the block")
    assert flow.closed and backend.shutdown_count == 1


async def test_create_is_a_coroutine_for_everything_that_takes_one() -> None:
    creation = WorkflowEngine.create(backend="noop")
    assert asyncio.iscoroutine(creation)
    flow = await asyncio.wait_for(asyncio.ensure_future(creation), timeout=30)
    assert isinstance(flow, WorkflowEngine)
    await flow.shutdown()
    other = await asyncio.create_task(WorkflowEngine.create(backend="noop"))
    await other.shutdown()


async def test_an_engine_gets_a_fresh_uid_when_none_is_given() -> None:
    first = await WorkflowEngine.create(backend="noop")
    second = await WorkflowEngine.create(backend="noop")
    assert first.uid.startswith("asyncflow.session.") and first.uid != second.uid
    await asyncio.gather(first.shutdown(), second.shutdown())


async def test_a_call_returns_a_registered_future_at_once(flow: WorkflowEngine) -> None:
    gate = asyncio.Event()

    @flow.function_task
    async def wait() -> str:
        await gate.wait()
        return "opened"

    @flow.function_task
    async def echo(value: str) -> str:
        return value

    upstream = wait()
    tasks_before = asyncio.all_tasks()
    future = echo(upstream)
    assert asyncio.all_tasks() == tasks_before  # no asyncio task per call
    assert isinstance(future, TaskFuture) and isinstance(future, asyncio.Future)
    assert (future.uid, future.name, future.state) == ("task.000002", "echo", "PENDING")
    assert record_of(flow, future.uid).future is future  # registered before the call returned
    gate.set()
    assert await future == "opened"
    assert future.state == TaskState.DONE


async def test_decorators_work_bare_and_with_options(noop_flow: WorkflowEngine) -> None:
    flow = noop_flow

    @flow.function_task
    async def bare() -> None: ...

    @flow.function_task(retries=1, timeout=3)
    async def called() -> None: ...

    @flow.executable_task
    async def command() -> str:
        return "true"

    @flow.executable_task(capture_stdio=True)
    async def captured() -> str:
        return "true"

    @flow.block
    async def block() -> str:
        return await bare()

    @flow.block()
    async def called_block() -> str:
        return await called()

    results = await asyncio.gather(bare(), called(), command(), captured(), block(),
                                   called_block())
    assert results == ["Dummy Output"] * 6
    assert (bare.__name__, block.__name__) == ("bare", "block")  # the wrapper keeps the name


async def test_a_plain_def_body_runs_off_the_event_loop(flow: WorkflowEngine) -> None:
    loop_thread = threading.get_ident()

    @flow.function_task
    def where() -> int:
        return threading.get_ident()

    assert await where() != loop_thread


async def test_task_description_merges_definition_and_call_the_call_wins(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task(task_description={"ranks": 2, "queue": "debug"})
    async def simulate(x: int, task_description: dict[str, object] | None = None) -> object:
        return x, task_description  # the keyword never reaches the body

    @flow.function_task
    async def from_default(task_description: dict[str, object] = {"cores": 4}) -> object:  # noqa: B006
        return task_description

    assert await simulate(1, task_description={"ranks": 8, "gpus": 1}) == (1, None)
    assert await simulate(2) == (2, None)
    assert await from_default(task_description={"gpus": 2}) == {"cores": 4}
    first, second, third = backend.specs
    assert first.description == {"ranks": 8, "queue": "debug", "gpus": 1}
    assert second.description == {"ranks": 2, "queue": "debug"}
    assert third.description == {"cores": 4, "gpus": 2}
    assert "task_description" not in first.kwargs


async def test_nested_defaults_are_not_shared_between_calls(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task(task_description={"pre_exec": ["module load x"]})
    async def step() -> None: ...

    await step(task_description={"ranks": 2})
    await step(task_description={"ranks": 3})
    first, second = backend.specs
    assert first.description["pre_exec"] is not second.description["pre_exec"]


async def test_timeout_and_capture_stdio_travel_in_the_task_spec(
        tmp_path: Path, backend: LoopBackend) -> None:
    async with await WorkflowEngine.create(backend=backend, uid="run",
                                           work_dir=tmp_path) as flow:
        @flow.executable_task(capture_stdio=True, timeout=30)
        async def hello(name: str) -> str:
            return f"echo hello {name}"

        @flow.function_task(timeout=0.05)
        async def too_slow() -> None:
            await asyncio.sleep(30)  # simulated work, stopped by the timeout

        path = await hello("there")
        spec = backend.specs[0]
        assert spec.timeout == 30 and spec.command == ("echo", "hello", "there")
        assert spec.stdout == tmp_path / "run" / f"{spec.uid}.stdout"
        assert spec.stderr == tmp_path / "run" / f"{spec.uid}.stderr"
        assert path == str(spec.stdout)
        assert Path(path).read_text() == "hello there\n"  # noqa: ASYNC240

        failing = too_slow()
        try:
            await failing
        except TaskTimeoutError as exc:
            assert "too_slow" in str(exc)
        else:
            raise AssertionError("the timeout did not stop the task")
        assert backend.specs[1].timeout == 0.05 and failing.state == TaskState.FAILED


async def test_retries_resubmit_with_the_attempt_number(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    calls: list[int] = []

    @flow.function_task(retries=2)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return "third time"

    @flow.function_task(retries=1)
    async def hopeless() -> None:
        raise ValueError("always")

    assert await flaky() == "third time"
    assert [spec.attempt for spec in backend.specs] == [1, 2, 3]
    future = hopeless()
    try:
        await future
    except ValueError as exc:
        assert str(exc) == "always"
    assert [spec.attempt for spec in backend.specs[3:]] == [1, 2]
    assert future.state == TaskState.FAILED


async def test_a_retried_executable_reuses_its_command(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    built: list[str] = []

    @flow.executable_task(retries=2)
    async def fails() -> str:
        built.append("body")
        return "false"

    try:
        await fails()
    except Exception as exc:
        assert "exited with code 1" in str(exc)
    assert built == ["body"]  # the body ran once; every attempt runs the same command
    assert [(s.attempt, s.command) for s in backend.specs] == [
        (1, ("false",)), (2, ("false",)), (3, ("false",))]


async def test_states_are_seen_through_the_future_and_an_observer(
        observer: Observer, backend: LoopBackend) -> None:
    flow = await WorkflowEngine.create(backend=backend)
    assert observer.started == [flow]
    gate = asyncio.Event()
    running = asyncio.Event()

    @flow.function_task
    async def work(fail: bool = False) -> str:
        running.set()
        await gate.wait()
        if fail:
            raise RuntimeError("failed on purpose")
        return "done"

    ok, bad, cancelled = work(), work(fail=True), work()
    assert ok.state == bad.state == cancelled.state == TaskState.PENDING
    await running.wait()
    assert ok.state == TaskState.RUNNING
    cancelled.cancel()
    gate.set()
    results = await asyncio.gather(ok, bad, return_exceptions=True)
    assert results[0] == "done" and isinstance(results[1], RuntimeError)
    assert (ok.state, bad.state, cancelled.state) == ("DONE", "FAILED", "CANCELLED")
    assert observer.states(ok.uid) == ["PENDING", "RUNNING", "DONE"]
    assert observer.states(bad.uid) == ["PENDING", "RUNNING", "FAILED"]
    assert observer.states(cancelled.uid)[-1] == "CANCELLED"
    await flow.shutdown()
    assert observer.stopped == [(flow, None)]


async def test_retries_are_seen_by_observers(observer: Observer,
                                             backend: LoopBackend) -> None:
    async with await WorkflowEngine.create(backend=backend) as flow:
        @flow.function_task(retries=1)
        async def once_broken() -> int:
            if len(backend.specs) == 1:
                raise OSError("first attempt")
            return 2

        future = once_broken()
        assert await future == 2
    changes = [(old, new, attempt) for uid, old, new, attempt in observer.changes
               if uid == future.uid]
    assert changes == [("PENDING", "RUNNING", 1), ("RUNNING", "PENDING", 2),
                       ("PENDING", "RUNNING", 2), ("RUNNING", "DONE", 2)]


async def test_the_engine_repr_shows_its_state_and_counts(noop_flow: WorkflowEngine) -> None:
    flow = noop_flow

    @flow.function_task
    async def one() -> None: ...

    future = one()
    assert repr(flow) == f"<WorkflowEngine {flow.uid} open backends=['noop'] pending=1>"
    await future
    assert repr(flow) == f"<WorkflowEngine {flow.uid} open backends=['noop']>"
    assert flow.counts() == {} and list(flow.tasks()) == []
