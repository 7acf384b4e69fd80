"""Issue 2, point 9: the backend contract (ExecutionBackend, Capabilities, TaskSpec,
TaskUpdate, report() from any thread), the noop backend, and dry_run."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from loop_backend import FunctionsOnlyBackend, LoopBackend

import asyncflow
from asyncflow import (
    Capabilities,
    ExecutionBackend,
    TaskKind,
    TaskSpec,
    TaskState,
    TaskUpdate,
    WorkflowEngine,
)
from asyncflow._plugins.noop import NoopExecutionBackend
from asyncflow.backend import _function_spec
from asyncflow.errors import ConfigError


async def test_noop_calls_no_body_and_runs_no_command(noop_flow: WorkflowEngine,
                                                      tmp_path: Path) -> None:
    called: list[str] = []
    marker = tmp_path / "touched"

    @noop_flow.function_task
    def plain() -> str:
        called.append("plain")
        return "real"

    @noop_flow.function_task
    async def coroutine(x: object) -> str:
        called.append("coroutine")
        return "real"

    @noop_flow.executable_task
    async def touch() -> str:
        return f"touch {marker}"

    assert await asyncio.gather(plain(), coroutine(plain()), touch()) == ["Dummy Output"] * 3
    assert called == [] and not marker.exists()


def test_noop_registers_through_the_same_hook_as_any_plugin() -> None:
    plugin = asyncflow.plugin_manager().get_plugin("asyncflow.noop")
    assert plugin is not None and hasattr(plugin, "asyncflow_register_backends")
    assert asyncflow.registry().get("noop") is NoopExecutionBackend
    assert asyncflow.registry().get("dry_run") is NoopExecutionBackend


@pytest.mark.parametrize("named", [True, False], ids=["by-name", "instance"])
async def test_dry_run_executes_nothing_whatever_backend_is_named(named: bool) -> None:
    instance = LoopBackend()
    called: list[str] = []
    backend = ["loop", "functions_only"] if named else [instance, FunctionsOnlyBackend()]
    async with await WorkflowEngine.create(backend=backend, dry_run=True) as flow:
        assert list(flow.backends) == ["loop", "functions_only"]
        assert all(isinstance(b, NoopExecutionBackend) for b in flow.backends.values())

        @flow.function_task
        async def here() -> None:
            called.append("here")

        @flow.function_task(backend="functions_only")
        async def there(x: object) -> None:
            called.append("there")

        assert await there(here()) == "Dummy Output"
    assert called == [] and instance.started_count == 0 and instance.shutdown_count == 0


class ThreadBackend(ExecutionBackend):
    """Runs plain ``def`` bodies in its own threads and reports from those threads."""

    name = "threads"
    capabilities = Capabilities(function_tasks=True)

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPoolExecutor(4)
        self.reporting_threads: set[int] = set()

    async def start(self) -> None: ...

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for spec in tasks:
            self.pool.submit(self._run, spec)

    def _run(self, spec: TaskSpec) -> None:
        self.reporting_threads.add(threading.get_ident())
        self.report(TaskUpdate.running(spec.uid))
        assert spec.function is not None
        try:
            value = spec.function(*spec.args, **spec.kwargs)
        except Exception as exc:
            self.report(TaskUpdate.failed(spec.uid, exc))
        else:
            self.report(TaskUpdate.done(spec.uid, value))

    async def cancel(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.pool.shutdown)


async def test_reports_from_other_threads_lose_no_update() -> None:
    backend = ThreadBackend()
    async with await WorkflowEngine.create(backend=backend) as flow:
        @flow.function_task
        def square(x: int) -> int:
            return x * x

        @flow.function_task
        def total(*values: int) -> int:
            return sum(values)

        futures = [square(i) for i in range(1000)]
        assert await total(*futures) == sum(i * i for i in range(1000))
        assert all(f.state == TaskState.DONE for f in futures)
    assert threading.get_ident() not in backend.reporting_threads


def test_report_before_attaching_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"LoopBackend\.report\(\) called before"):
        LoopBackend().report(TaskUpdate.running("task.000001"))


def test_a_report_after_the_loop_closed_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    backend = LoopBackend()
    backend.attach(lambda update: None, loop)
    loop.close()
    thread = threading.Thread(target=backend.report, args=(TaskUpdate.done("task.1", 1),))
    thread.start()  # an exception in the thread would fail the test (unraisable)
    thread.join(10)


async def test_open_and_close_run_start_and_shutdown_once() -> None:
    backend = LoopBackend()
    assert repr(backend) == "<LoopBackend name='loop' new>"
    results = await asyncio.gather(backend.open(), backend.open(), backend)
    assert results == [backend] * 3 and backend.started and backend.started_count == 1
    async with backend:
        pass
    await asyncio.gather(backend.close(), backend.close())
    assert backend.closed and backend.shutdown_count == 1
    assert repr(backend) == "<LoopBackend name='loop' closed>"
    with pytest.raises(RuntimeError, match="LoopBackend has been shut down"):
        await backend.open()
    never_started = LoopBackend()
    await never_started.close()
    assert never_started.shutdown_count == 0


async def test_a_backend_that_fails_to_start_closes_the_ones_started() -> None:
    class Broken(LoopBackend):
        name = "broken"

        async def start(self) -> None:
            raise ConnectionError("no cluster")

    first = LoopBackend()
    with pytest.raises(ConnectionError, match="no cluster"):
        await WorkflowEngine.create(backend=[first, Broken()])
    assert first.shutdown_count == 1


async def test_two_backends_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="backend 'loop' is listed twice"):
        await WorkflowEngine.create(backend=[LoopBackend(), LoopBackend()])


def test_a_task_spec_is_immutable() -> None:
    spec = TaskSpec("task.000001", "f", TaskKind.FUNCTION, print, (1,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.attempt = 2  # type: ignore[misc]
    assert spec.attempt == 1 and spec.kwargs == {} and spec.timeout is None


def test_capabilities_say_what_is_missing() -> None:
    caps = Capabilities(function_tasks=True, executable_tasks=False)
    assert caps.missing(function_tasks=True, executable_tasks=True, timeouts=False) == [
        "executable_tasks"]
    assert caps.missing(function_tasks=True) == []


def test_task_states_are_strings_and_know_when_they_are_final() -> None:
    assert TaskState.CANCELLED == "CANCELLED" and str(TaskState.DONE) == "DONE"
    assert [s.is_terminal for s in TaskState] == [False, False, True, True, True]
    update = TaskUpdate.failed("task.000001", ValueError("x"))
    assert update.state is TaskState.FAILED and isinstance(update.error, ValueError)
    assert TaskUpdate.cancelled("t").state is TaskState.CANCELLED
    assert TaskUpdate.canceled("t") == TaskUpdate.cancelled("t")  # the old spelling, kept


def test_the_engines_fast_function_spec_equals_one_built_by_keyword() -> None:
    # _function_spec fills TaskSpec positionally for speed: this pins it to the field order.
    def body() -> None: ...

    values = dict(uid="task.000007", name="body", function=body, args=(1,), kwargs={"k": 2},
                  description={"ranks": 3}, timeout=4.5, attempt=6, is_coroutine=True,
                  input_files=("in",), output_files=("out",))
    fast = _function_spec(**values)
    assert fast._asdict() == TaskSpec(kind=TaskKind.FUNCTION, **values)._asdict()
