"""``BackendConformance``: the backend contract as a pytest class to subclass.

Each test runs its own scenario on a fresh backend in its own event loop
(:class:`asyncio.Runner`), bounded by :attr:`BackendConformance.timeout`, so it needs neither
an async pytest plugin nor anything in the author's ``conftest.py``, and it behaves the same
under pytest-asyncio's auto and strict modes.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import re
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from asyncflow import _plugins
from asyncflow._config import build
from asyncflow._kernel.engine import WorkflowEngine
from asyncflow.backend import Capabilities, ExecutionBackend, TaskState, TaskUpdate
from asyncflow.errors import (
    CapabilityError,
    DependencyFailureError,
    ExecutableFailedError,
    ServiceExitedError,
    ServiceNotReadyError,
    TaskTimeoutError,
)
from asyncflow.hookspecs import hookimpl
from asyncflow.services import ServiceEndpoint
from asyncflow.testing import _bodies as bodies
from asyncflow.testing._harness import Driver, Recorder, count_calls

__all__ = ["BackendConformance", "requires"]

T = TypeVar("T")
Test = TypeVar("Test", bound=Callable[..., Any])

EXECUTES = "executes"  # a requirement that is a class attribute, not a capability


def requires(*needs: str) -> Callable[[Test], Test]:
    """Skip the test unless the backend declares every capability in ``needs``
    (``"executable_tasks"``...) or, for ``"executes"``, runs task bodies at all."""
    known = {f.name for f in fields(Capabilities)} | {EXECUTES}
    unknown = set(needs) - known
    if unknown:
        raise ValueError(f"requires(): unknown capabilities {sorted(unknown)}")

    def decorate(test: Test) -> Test:
        @functools.wraps(test)
        def gated(self: BackendConformance, *args: Any, **kwargs: Any) -> Any:
            self.skip_unless(*needs)
            return test(self, *args, **kwargs)
        gated.requires = needs  # type: ignore[attr-defined]
        return gated  # type: ignore[return-value]
    return decorate


class BackendConformance:
    """The backend contract; subclass it in a test module and set :attr:`backend_name`::

        from asyncflow.testing import BackendConformance

        class TestDaskConformance(BackendConformance):
            backend_name = "dask"
            backend_options = {"n_workers": 2, "processes": False}

    The backend is built by name through the plugin registry, so passing also proves its
    entry point is installed. Tests that need a capability the backend does not declare are
    skipped with the reason. To change one test, override the method (e.g. to mark it
    ``xfail`` with a reason); to build the backend differently, override
    :meth:`make_backend`.
    """

    backend_name: ClassVar[str]
    """The name the backend is registered under (its entry-point name)."""
    backend_options: ClassVar[Mapping[str, Any]] = {}
    """Keyword options for its constructor."""
    executes: ClassVar[bool] = True
    """``False`` for a backend that completes tasks without running their bodies (``noop``):
    tests about results, errors and running tasks are then skipped."""
    timeout: ClassVar[float] = 60.0
    """Seconds each test's scenario may take, start and shutdown included."""
    many: ClassVar[int] = 1000
    """How many small tasks the lost-update test submits."""
    prompt_completion: ClassVar[Callable[[str, Mapping[str, Any]], Any] | None] = None
    """For a backend with ``prompt_tasks``: the completion function its options give it (such
    as :func:`asyncflow.testing.echo_completion`), so the prompt tests check each answer
    against it; ``None`` (a real model, say) checks that answers are non-empty strings."""
    waiting_for = "the scenario to start"  # what a scenario awaits, for the timeout's message

    if importlib.util.find_spec("pytest_timeout"):  # a hard stop for a backend that hangs
        pytestmark = [pytest.mark.timeout(300)]

    # -- what a subclass may override ------------------------------------------------------

    def make_backend(self) -> ExecutionBackend:
        """A new, unstarted backend: by name through the registry, with the options."""
        return build(self.backend_name, dict(self.backend_options))

    @property
    def backend_class(self) -> type[ExecutionBackend]:
        return _plugins.registry().get(self.backend_name)

    # -- running scenarios -----------------------------------------------------------------

    def skip_unless(self, *needs: str) -> None:
        cls = self.backend_class
        for need in needs:
            if need == EXECUTES:
                if not self.executes:
                    pytest.skip(f"{type(self).__name__}.executes is False: "
                                f"{cls.__name__} completes tasks without running them")
            elif not getattr(cls.capabilities, need):
                pytest.skip(f"{cls.__name__}.capabilities.{need} is False")

    def run(self, scenario: Callable[[], Awaitable[T]],
            what: Callable[[], str] | None = None) -> T:
        """Run ``scenario()`` in a new event loop, failing it after :attr:`timeout`."""
        what = what or (lambda: self.waiting_for)

        async def bounded() -> T:
            task = asyncio.ensure_future(scenario())
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
            if not done:
                waiting_for = what()  # before the clean-up changes it
                task.cancel()
                await asyncio.wait({task}, timeout=self.timeout)  # let it clean up, bounded
                raise AssertionError(f"{self.backend_name}: the scenario did not finish within "
                                     f"{self.timeout:g} s; it was waiting for {waiting_for}")
            return task.result()

        with asyncio.Runner() as runner:
            return runner.run(bounded())

    def drive(self, scenario: Callable[[Driver], Awaitable[None]], tmp_path: Path) -> None:
        """Run ``scenario`` with a started backend attached to a :class:`Recorder`; then close
        the backend and fail on any contract violation the recorder saw."""
        recorders: list[Recorder] = []  # one, made on the scenario's loop thread

        async def with_backend() -> None:
            recorders.append(Recorder())
            async with self._driven(recorders[0], tmp_path) as driver:
                await scenario(driver)

        def waiting_for() -> str:
            return recorders[0].waiting_for if recorders else "the backend to start"

        try:
            self.run(with_backend, waiting_for)
        except BaseException as exc:
            if recorders and recorders[0].violations:  # they may explain the failure
                exc.add_note(_listing("contract violations seen", recorders[0].violations))
            raise
        violations = recorders[0].violations
        assert not violations, _listing("contract violations", violations)

    @asynccontextmanager
    async def _driven(self, recorder: Recorder, tmp_path: Path) -> Any:
        backend = self.make_backend()
        backend.attach(recorder)
        backend.work_dir = tmp_path / "work"
        driver = Driver(backend, recorder, tmp_path)
        recorder.waiting_for = "backend.open()"
        await backend.open()
        try:
            yield driver
        finally:
            driver.open_gates()  # never leave a body blocked after the test
            await driver.close()

    async def engine(self, tmp_path: Path) -> WorkflowEngine:
        self.waiting_for = "WorkflowEngine.create()"
        flow = await WorkflowEngine.create(backend=self.make_backend(), work_dir=tmp_path)
        self.waiting_for = "the workflow's tasks"
        return flow

    async def shut(self, flow: WorkflowEngine) -> None:
        self.waiting_for = "flow.shutdown()"
        await flow.shutdown()

    @property
    def gate_limit(self) -> float:
        return self.timeout / 2

    # -- registration ----------------------------------------------------------------------

    def test_registered_under_declared_name(self) -> None:
        info = _plugins.registry().info(self.backend_name)
        cls = info.load()
        assert info.name == self.backend_name, f"{self.backend_name!r} is an alias of {info.name!r}"
        assert cls.name == self.backend_name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.name), f"{cls.name!r} is not lower snake case"
        assert isinstance(cls.capabilities, Capabilities)
        assert isinstance(self.make_backend(), cls)

    def test_installed_as_entry_point(self) -> None:
        cls = self.backend_class
        if cls.__module__.split(".")[0] == "asyncflow":
            pytest.skip(f"{cls.__name__} is built into asyncflow-core (no entry point)")
        points = metadata.entry_points(group="asyncflow", name=self.backend_name)
        assert len(points) == 1, (f"expected one entry point {self.backend_name!r} in the "
                                  f"'asyncflow' group, found {len(points)}")
        info = _plugins.registry().info(self.backend_name)
        (point,) = points
        assert point.dist is not None and info.distribution == point.dist.name

    def test_unknown_option_raises_type_error(self, tmp_path: Path) -> None:
        bogus = {**self.backend_options, "no_such_conformance_option": 1}
        with pytest.raises(TypeError, match=self.backend_name) as raised:
            build(self.backend_name, bogus)
        assert "no_such_conformance_option" in str(raised.value)

        async def by_name() -> None:
            with pytest.raises(TypeError, match="no_such_conformance_option"):
                await WorkflowEngine.create(backend=self.backend_name, work_dir=tmp_path,
                                            **bogus)
        self.run(by_name)

    # -- life cycle ------------------------------------------------------------------------

    def test_open_and_close_are_idempotent_and_concurrency_safe(self) -> None:
        async def scenario() -> None:
            backend = self.make_backend()
            calls = count_calls(backend, "start", "shutdown")
            backend.attach(Recorder())
            await asyncio.gather(backend.open(), backend.open())
            assert await backend.open() is backend
            assert backend.started and calls == {"start": 1, "shutdown": 0}
            await asyncio.gather(backend.close(), backend.close())
            await backend.close()
            assert backend.closed and calls == {"start": 1, "shutdown": 1}
            with pytest.raises(RuntimeError):
                await backend.open()

            never_opened = self.make_backend()
            calls = count_calls(never_opened, "start", "shutdown")
            await never_opened.close()
            assert calls == {"start": 0, "shutdown": 0}

            async with self.make_backend() as entered:
                assert entered.started
            assert entered.closed
        self.run(scenario)

    # -- function tasks --------------------------------------------------------------------

    @requires("function_tasks", EXECUTES)
    def test_function_results_sync_and_async(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            sync = d.spec(bodies.add, 2, 3)
            coroutine = d.spec(bodies.multiply, 4, b=5)
            data = d.spec(bodies.echo, {"a": [1, 2.5, "x"], "b": None})
            await d.submit(sync, coroutine, data)
            outcomes = await d.outcomes([sync, coroutine, data])
            assert [u.state for u in outcomes.values()] == [TaskState.DONE] * 3, outcomes
            assert outcomes[sync.uid].value == 5
            assert outcomes[coroutine.uid].value == 20
            assert outcomes[data.uid].value == {"a": [1, 2.5, "x"], "b": None}
        self.drive(scenario, tmp_path)

    @requires("function_tasks", EXECUTES)
    def test_exception_keeps_type_and_traceback(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            sync = d.spec(bodies.fail_sync, "sync body failed")
            coroutine = d.spec(bodies.fail_async, "async body failed")
            await d.submit(sync, coroutine)
            for spec, body in ((sync, "fail_sync"), (coroutine, "fail_async")):
                update = await d.outcome(spec)
                assert update.state is TaskState.FAILED, update
                error = update.error
                assert isinstance(error, bodies.ConformanceError), f"{spec.uid}: {error!r}"
                assert str(error) == f"{body.split('_')[1]} body failed"
                text = "".join(traceback.format_exception(error))
                assert body in text, f"the traceback does not show the body {body}:\n{text}"
        self.drive(scenario, tmp_path)

    @requires("function_tasks", EXECUTES)
    def test_sync_body_runs_off_the_event_loop(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.spec(bodies.where)
            await d.submit(spec)
            update = await d.outcome(spec)
            assert update.state is TaskState.DONE, update
            assert tuple(update.value) != (os.getpid(), threading.get_ident()), (
                "a plain `def` body ran on the event loop's thread, blocking every other task: "
                "run it in a worker thread or another process")
        self.drive(scenario, tmp_path)

    @requires("function_tasks")
    def test_many_small_tasks_lose_no_update(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            specs = [d.spec(bodies.double, i) for i in range(self.many)]
            for start in range(0, len(specs), 100):
                await d.submit(*specs[start:start + 100])
            outcomes = await d.outcomes(specs)
            failed = [u for u in outcomes.values() if u.state is not TaskState.DONE]
            assert not failed, f"{len(failed)} of {self.many} tasks did not succeed: {failed[:3]}"
            if self.executes:
                wrong = [(i, outcomes[s.uid].value) for i, s in enumerate(specs)
                         if outcomes[s.uid].value != 2 * i]
                assert not wrong, f"wrong results (i, value): {wrong[:5]}"
        self.drive(scenario, tmp_path)

    def test_reports_from_other_threads_arrive_on_the_loop(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            uid = "conformance.from-a-thread"
            d.recorder.expect([uid])

            def report_from_thread() -> None:
                d.backend.report(TaskUpdate.running(uid))
                d.backend.report(TaskUpdate.done(uid, 7))

            thread = threading.Thread(target=report_from_thread, name="conformance-reporter")
            thread.start()
            update = await d.recorder.terminal(uid)
            await asyncio.to_thread(thread.join)
            assert (update.state, update.value) == (TaskState.DONE, 7)
            assert [u.state for u in d.recorder.updates[uid]] == [TaskState.RUNNING,
                                                                  TaskState.DONE]
        self.drive(scenario, tmp_path)

    # -- cancellation and shutdown ---------------------------------------------------------

    @requires("function_tasks")
    def test_cancel_pending_tasks(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            gate = d.gate()
            specs = [d.spec(bodies.wait_for_gate, str(gate.path), self.gate_limit)
                     for _ in range(64)]
            await d.submit(*specs)
            said = {spec.uid: await d.cancel(spec.uid) for spec in reversed(specs)}
            gate.open()
            outcomes = await d.outcomes(specs)
            for uid, cancelled in said.items():
                state = outcomes[uid].state
                expected = TaskState.CANCELLED if cancelled else TaskState.DONE
                assert state is expected, (f"cancel({uid}) returned {cancelled}, but the task "
                                           f"ended {state}")
            if self.executes:
                assert any(said.values()), ("cancel() returned False for each of 64 tasks "
                                            "waiting behind a closed gate")
        self.drive(scenario, tmp_path)

    @requires("function_tasks")
    def test_cancel_of_finished_or_unknown_task_returns_false(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.spec(bodies.add, 1, 2)
            await d.submit(spec)
            assert (await d.outcome(spec)).state is TaskState.DONE
            assert await d.cancel(spec.uid) is False
            assert await d.cancel("conformance.never-submitted") is False
            later = d.spec(bodies.add, 3, 4)  # reports in flight arrive before this one's
            await d.submit(later)
            await d.outcome(later)
        self.drive(scenario, tmp_path)

    @requires("cancel_running", "function_tasks", EXECUTES)
    def test_cancel_running_task(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.spec(bodies.sleep_async, 3600)
            await d.submit(spec)
            assert (await d.recorder.running(spec.uid)).state is TaskState.RUNNING
            assert await d.cancel(spec.uid) is True
            assert (await d.outcome(spec)).state is TaskState.CANCELLED
        self.drive(scenario, tmp_path)

    @requires("function_tasks")
    def test_shutdown_with_work_in_flight_leaves_nothing_pending(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            gate = d.gate()
            specs = [d.spec(bodies.wait_for_gate, str(gate.path), self.gate_limit)
                     for _ in range(16)]
            await d.submit(*specs)
            await d.close()
            assert d.backend.closed
            outcomes = await d.outcomes(specs)
            gate.open()
            if self.executes:
                finished = [u for u in outcomes.values() if u.state is TaskState.DONE]
                assert not finished, ("shutdown() waited for running tasks instead of "
                                      f"cancelling them: {finished[:3]}")
        self.drive(scenario, tmp_path)

    # -- executables -----------------------------------------------------------------------

    @requires("executable_tasks", EXECUTES)
    def test_executable_output_and_exit_codes(self, tmp_path: Path) -> None:
        printed_cwd: list[str] = []

        async def scenario(d: Driver) -> None:
            ok = d.command(("sh", "-c", "echo out; echo err >&2"))
            exit3 = d.command(("sh", "-c", "echo broken >&2; exit 3"))
            shell = d.command("echo $((1 + 2)) | tr 3 x")
            missing = d.command(("no-such-command-for-asyncflow-conformance",))
            env = d.command(("sh", "-c", "echo $CONFORMANCE_VALUE"),
                            env={"CONFORMANCE_VALUE": "42"})
            cwd = d.command(("pwd",), cwd=str(tmp_path))
            await d.submit(ok, exit3, shell, missing, env, cwd)
            outcomes = await d.outcomes([ok, exit3, shell, missing, env, cwd])
            assert (outcomes[ok.uid].state, outcomes[ok.uid].value) == (TaskState.DONE, "out\n")
            for spec, code in ((exit3, 3), (missing, 127)):
                error = outcomes[spec.uid].error
                assert isinstance(error, ExecutableFailedError), outcomes[spec.uid]
                assert error.exit_code == code
            failed = outcomes[exit3.uid].error
            assert isinstance(failed, ExecutableFailedError) and "broken" in failed.stderr
            assert outcomes[shell.uid].value == "x\n"
            assert outcomes[env.uid].value == "42\n"
            printed_cwd.append(outcomes[cwd.uid].value.strip())
        self.drive(scenario, tmp_path)
        assert Path(printed_cwd[0]).resolve() == tmp_path.resolve()

    @requires("executable_tasks", "capture_stdio", EXECUTES)
    def test_capture_stdio_to_files(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            out, err = tmp_path / "captured" / "t.stdout", tmp_path / "captured" / "t.stderr"
            spec = d.command(("sh", "-c", "echo to-stdout; echo to-stderr >&2"), stdout=out,
                             stderr=err)
            await d.submit(spec)
            update = await d.outcome(spec)
            assert (update.state, update.value) == (TaskState.DONE, str(out)), update
            assert out.read_text() == "to-stdout\n"
            assert err.read_text() == "to-stderr\n"
        self.drive(scenario, tmp_path)

    @requires("executable_tasks", "cancel_running", EXECUTES)
    def test_cancel_running_executable(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.command(("sleep", "3600"))
            await d.submit(spec)
            assert (await d.recorder.running(spec.uid)).state is TaskState.RUNNING
            assert await d.cancel(spec.uid) is True
            assert (await d.outcome(spec)).state is TaskState.CANCELLED
        self.drive(scenario, tmp_path)

    # -- prompts ---------------------------------------------------------------------------

    def _check_answer(self, value: Any, prompt: str, description: Mapping[str, Any]) -> None:
        assert isinstance(value, str) and value, f"the answer to {prompt!r} is {value!r}"
        completion = type(self).prompt_completion  # through the class: not a bound method
        if self.executes and completion is not None:
            assert value == completion(prompt, description)

    @requires("prompt_tasks")
    def test_prompts_answered(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            plain = d.prompt("Name a prime number.")
            described = d.prompt("Say hello.", description={"model": "conformance-model"})
            await d.submit(plain, described)
            outcomes = await d.outcomes([plain, described])
            for spec in (plain, described):
                update = outcomes[spec.uid]
                assert update.state is TaskState.DONE, update
                assert spec.prompt is not None
                self._check_answer(update.value, spec.prompt, spec.description)
        self.drive(scenario, tmp_path)

    @requires("prompt_tasks")
    def test_engine_prompt_task(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                @flow.prompt_task(task_description={"model": "conformance-model"})
                def ask(topic: str) -> str:
                    return f"Write one line about {topic}."

                @flow.prompt_task
                def empty() -> str:
                    return "  "

                expected = "asyncflow"
                topic: Any = expected
                if self.backend_class.capabilities.function_tasks:  # a dependency, then
                    topic = flow.function_task(bodies.echo)(topic)
                    if not self.executes:
                        expected = "Dummy Output"  # what a backend that runs nothing returns
                answer = await ask(topic)
                self._check_answer(answer, f"Write one line about {expected}.",
                                   {"model": "conformance-model"})
                with pytest.raises(ValueError, match=r"'empty'.*non-empty string prompt"):
                    await empty()
            finally:
                await self.shut(flow)
        self.run(scenario)

    # -- timeouts --------------------------------------------------------------------------

    @requires("timeouts", "function_tasks", EXECUTES)
    def test_function_timeout(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.spec(bodies.sleep_async, 3600, timeout=0.5)
            await d.submit(spec)
            update = await d.outcome(spec)
            assert isinstance(update.error, TaskTimeoutError), update
        self.drive(scenario, tmp_path)

    @requires("timeouts", "executable_tasks", EXECUTES)
    def test_executable_timeout(self, tmp_path: Path) -> None:
        async def scenario(d: Driver) -> None:
            spec = d.command(("sleep", "3600"), timeout=0.5)
            await d.submit(spec)
            update = await d.outcome(spec)
            assert isinstance(update.error, TaskTimeoutError), update
        self.drive(scenario, tmp_path)

    # -- through a WorkflowEngine ----------------------------------------------------------

    @requires("function_tasks")
    def test_engine_by_name_runs_a_workflow(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            self.waiting_for = f"WorkflowEngine.create(backend={self.backend_name!r})"
            flow = await WorkflowEngine.create(backend=self.backend_name, work_dir=tmp_path,
                                               **self.backend_options)
            self.waiting_for = "the workflow's tasks"
            try:
                assert isinstance(flow.backends[self.backend_name], self.backend_class)
                total = flow.function_task(bodies.add)
                times = flow.function_task(bodies.multiply)
                first = total(1, 2)
                second = times(first, 10)  # type: ignore[arg-type]  # a future is a dependency
                fan = [flow.function_task(bodies.double)(i) for i in range(200)]
                results = await asyncio.gather(second, *fan)
                assert all(f.state == TaskState.DONE for f in (first, second, *fan))
                if self.executes:
                    assert results == [30, *(2 * i for i in range(200))]
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("function_tasks", EXECUTES)
    def test_engine_failure_reaches_dependents(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                failing = flow.function_task(bodies.fail_sync)("upstream failed")
                dependent = flow.function_task(bodies.echo)(failing)
                with pytest.raises(bodies.ConformanceError, match="upstream failed"):
                    await failing
                with pytest.raises(DependencyFailureError) as raised:
                    await dependent
                assert isinstance(raised.value.root_cause, bodies.ConformanceError)
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("function_tasks")
    def test_engine_shutdown_leaves_no_future_pending(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            gate = tmp_path / "gate"
            flow = await self.engine(tmp_path)
            try:
                wait = flow.function_task(bodies.wait_for_gate)
                blocked = [wait(str(gate), self.gate_limit) for _ in range(8)]
                dependents = [flow.function_task(bodies.echo)(f) for f in blocked]
                await self.shut(flow)
                futures = [*blocked, *dependents]
                assert all(f.done() for f in futures), [f for f in futures if not f.done()]
                await asyncio.gather(*futures, return_exceptions=True)
            finally:
                gate.touch()
                await self.shut(flow)
        self.run(scenario)

    @requires("executable_tasks", EXECUTES)
    def test_engine_executable_task(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                @flow.executable_task
                def greet(name: str) -> str:
                    return f"echo hello {name}"

                @flow.executable_task
                def fail() -> str:
                    return "sh -c 'exit 4'"

                assert await greet("conformance") == "hello conformance\n"
                with pytest.raises(ExecutableFailedError) as raised:
                    await fail()
                assert raised.value.exit_code == 4
            finally:
                await self.shut(flow)
        self.run(scenario)

    # -- service tasks ---------------------------------------------------------------------

    def test_engine_refuses_services_without_the_capability(self, tmp_path: Path) -> None:
        if self.backend_class.capabilities.services:
            pytest.skip(f"{self.backend_class.__name__}.capabilities.services is True")

        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                serve = _service_task(flow, "sleep 60")

                with pytest.raises(CapabilityError, match="services"):
                    await serve()
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_service_ready_then_stopped_at_shutdown(self, tmp_path: Path) -> None:
        # Ready on a line of its output; the endpoint carries the line's named groups.
        command = bodies.python_command(
            "import os, time; print('ready pid', os.getpid(), flush=True); time.sleep(600)")

        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                serve = _service_task(flow, command)

                service = serve(task_description={"ready_line": r"ready pid (?P<pid>\d+)",
                                                  "ready_timeout": self.gate_limit})
                endpoint = await service
                assert isinstance(endpoint, ServiceEndpoint)
                assert service.state == TaskState.DONE
                assert endpoint.line is not None and endpoint.line.startswith("ready pid")
                pid = int(endpoint.match["pid"])
            finally:
                await self.shut(flow)
            if not self.backend_class.capabilities.remote_workers:
                assert not _alive(pid), f"service process {pid} outlived the shutdown"
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_service_that_dies_early_fails_with_exit_code(self, tmp_path: Path) -> None:
        command = bodies.python_command(
            "import sys; print('cannot bind', file=sys.stderr); sys.exit(5)")

        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                serve = _service_task(flow, command)

                with pytest.raises(ServiceExitedError) as raised:
                    await serve(task_description={"ready_line": "never printed",
                                                  "ready_timeout": self.gate_limit})
                assert raised.value.exit_code == 5
                assert not raised.value.ready
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_service_that_dies_later_is_reported(self, tmp_path: Path) -> None:
        command = bodies.python_command("import sys; print('up', flush=True); sys.exit(7)")

        async def scenario() -> None:
            exited: asyncio.Future[tuple[str, BaseException | None]] = \
                asyncio.get_running_loop().create_future()

            class Watcher:
                @hookimpl
                def asyncflow_service_exited(self, service: Any,
                                             error: BaseException | None) -> None:
                    if not exited.done():
                        exited.set_result((service.uid, error))

            self.waiting_for = "WorkflowEngine.create()"
            flow = await WorkflowEngine.create(backend=self.make_backend(), work_dir=tmp_path,
                                               observers=[Watcher()])
            self.waiting_for = "the service's end to be reported"
            try:
                serve = _service_task(flow, command)

                service = serve(task_description={"ready_line": "^up$",
                                                  "ready_timeout": self.gate_limit})
                await service
                uid, error = await exited
                assert uid == service.uid
                assert isinstance(error, ServiceExitedError), error
                assert error.ready and error.exit_code == 7
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_service_not_ready_in_time_fails_and_is_stopped(self,
                                                                   tmp_path: Path) -> None:
        command = bodies.python_command(
            "import time; print('starting', flush=True); time.sleep(600)")

        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                serve = _service_task(flow, command)

                with pytest.raises(ServiceNotReadyError) as raised:
                    await serve(task_description={"ready_line": "never printed",
                                                  "ready_timeout": 2})
                assert "never printed" in raised.value.condition
                assert raised.value.timeout == 2
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_service_cancelled_before_ready(self, tmp_path: Path) -> None:
        command = bodies.python_command("import time; time.sleep(600)")

        async def scenario() -> None:
            flow = await self.engine(tmp_path)
            try:
                serve = _service_task(flow, command)

                service = serve(task_description={"ready_line": "never printed",
                                                  "ready_timeout": self.gate_limit})
                await asyncio.sleep(0)  # released to the backend
                assert service.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await service
                assert service.state == TaskState.CANCELLED
            finally:
                await self.shut(flow)
        self.run(scenario)

    @requires("services", "executable_tasks", EXECUTES)
    def test_engine_stop_service_stops_a_ready_service(self, tmp_path: Path) -> None:
        command = bodies.python_command(
            "import os, time; print('ready pid', os.getpid(), flush=True); time.sleep(600)")

        async def scenario() -> None:
            exits: list[str] = []

            class Watcher:
                @hookimpl
                def asyncflow_service_exited(self, service: Any) -> None:
                    exits.append(service.uid)

            self.waiting_for = "WorkflowEngine.create()"
            flow = await WorkflowEngine.create(backend=self.make_backend(), work_dir=tmp_path,
                                               observers=[Watcher()])
            self.waiting_for = "the service to be ready, then stopped"
            try:
                serve = _service_task(flow, command)

                service = serve(task_description={"ready_line": r"ready pid (?P<pid>\d+)",
                                                  "ready_timeout": self.gate_limit})
                endpoint = await service
                assert await flow.stop_service(service) is True
                assert service.state == TaskState.DONE and service.result() is endpoint
                if not self.backend_class.capabilities.remote_workers:
                    pid = int(endpoint.match["pid"])
                    assert not _alive(pid), f"service process {pid} outlived stop_service"
                assert await flow.stop_service(service) is False  # stopped already
            finally:
                await self.shut(flow)
            assert exits == [], "a stopped service was reported as exited on its own"
        self.run(scenario)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _service_task(flow: WorkflowEngine, command: str) -> Any:
    """An executable service task of ``flow`` that runs ``command``."""
    def service_command() -> str:
        return command

    return flow.executable_task(service_command, service=True)


def _listing(title: str, items: list[str], limit: int = 10) -> str:
    more = f"\n... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}):\n" + "\n".join(items[:limit]) + more
