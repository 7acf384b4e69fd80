"""The workflow engine: registers calls, tracks dependencies, feeds backends, settles futures.

Scheduling is driven by events only. A call registers its task synchronously; a task whose
dependencies are all done is *released*: its arguments are resolved and its spec joins the
batch of its backend; one ``submit`` per backend per loop iteration sends the batches. A
backend's report settles the task's future and releases its dependents at once. There is no
polling loop, no sleep and no timeout on this path.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from asyncflow import _plugins, executables
from asyncflow._kernel import deps as _deps
from asyncflow._kernel import exit_guard as _exit
from asyncflow._kernel import signals as _signals
from asyncflow._kernel.creation import awaitable_or_context
from asyncflow._kernel.decorators import DecoratorsMixin
from asyncflow._kernel.submitter import Submitter
from asyncflow._kernel.task import (
    BLOCK,
    EXECUTABLE,
    FUNCTION,
    NEXT_STATES,
    PROMPT,
    TaskFuture,
    TaskOptions,
    TaskRecord,
)
from asyncflow._kernel.telemetry import TelemetryMixin
from asyncflow._kernel.workflows import WorkflowScope, new_workflow_id
from asyncflow.backend import (
    ExecutionBackend,
    TaskKind,
    TaskSpec,
    TaskState,
    TaskUpdate,
    _function_spec,
)
from asyncflow.errors import (
    BackendError,
    CapabilityError,
    DependencyFailureError,
    EngineClosedError,
    EngineInternalError,
    TaskExitError,
    UnknownBackendError,
)
from asyncflow.retries import RetryPolicy, with_attempt
from asyncflow.services import readiness

if TYPE_CHECKING:
    from asyncflow.config import Settings
    from asyncflow.graph import TaskGraph

__all__ = ["ResultStore", "WorkflowEngine"]

log = logging.getLogger("asyncflow.engine")

# The block whose body is running, so tasks called inside it become its members.
_current_block: contextvars.ContextVar[TaskRecord | None] = contextvars.ContextVar(
    "asyncflow_block", default=None)

_KINDS = {FUNCTION: TaskKind.FUNCTION, EXECUTABLE: TaskKind.EXECUTABLE, PROMPT: TaskKind.PROMPT}
_SPEC_KEYS = ("shell", "cwd", "env")  # task_description keys the engine turns into TaskSpec fields


class ResultStore(Protocol):
    """What a resumed run asks before running a task: the one question the engine has for
    an earlier run's records (the run journal answers it, see :mod:`asyncflow.journal`)."""

    def recall(self, task: TaskRecord) -> tuple[bool, Any]:
        """``(True, result)`` when ``task``'s call completed before, else ``(False, None)``."""


class WorkflowEngine(DecoratorsMixin, TelemetryMixin):
    """Runs tasks on execution backends. Create it with ``await WorkflowEngine.create(...)``
    and close it with ``await flow.shutdown()``, or use ``async with
    WorkflowEngine.create(...) as flow:``, which shuts it down on exit.
    """

    def __init__(self, backends: Mapping[str, ExecutionBackend] | Sequence[ExecutionBackend], *,
                 uid: str | None = None, work_dir: str | Path | None = None,
                 dry_run: bool = False, shutdown_timeout: float = 30.0,
                 observers: Sequence[object] = (), results: ResultStore | None = None,
                 settings: Settings | None = None) -> None:
        """``observers`` are this engine's own plugins: objects with ``asyncflow_*`` hook
        implementations (see :mod:`asyncflow.hookspecs`), called beside the process-wide
        ones; each opens what it needs when the engine starts and closes it when it stops.
        ``results`` answers a resumed run: a task it knows is DONE without running.
        ``settings`` is the configuration ``create()`` read, which plugins receive in
        ``asyncflow_engine_configured`` when the engine starts.
        """
        if not isinstance(backends, Mapping):
            named: dict[str, ExecutionBackend] = {}
            for backend in backends:
                if backend.name in named:
                    raise ValueError(f"two backends are named {backend.name!r}: "
                                     f"{named[backend.name]!r} and {backend!r}")
                named[backend.name] = backend
            backends = named
        if not backends:
            raise ValueError("WorkflowEngine needs at least one backend")
        self.loop = asyncio.get_running_loop()
        # os.urandom, as secrets.token_hex does, without importing secrets (random, hashlib)
        self.uid = uid or f"asyncflow.session.{os.urandom(4).hex()}"
        self.work_dir = Path(work_dir) if work_dir is not None else Path.cwd()
        self.dry_run = dry_run
        self.shutdown_timeout = shutdown_timeout
        self.backends: dict[str, ExecutionBackend] = dict(backends)
        """The backends by routing name; the first is the default."""
        self.default_backend = next(iter(self.backends))
        self.backend = self.backends[self.default_backend]
        self._records: dict[str, TaskRecord] = {}  # every task and block not finished yet
        # The workflow scope calls are in; this engine's own, so no scope leaks to another.
        self._workflow: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"asyncflow_workflow_{self.uid}", default=None)
        # Tasks of every kind share the "task." uids, blocks have their own.
        self._counters = {"task": 0, "block": 0}
        self._submitters: dict[ExecutionBackend, Submitter] = {}  # made when the engine starts
        self._tasks: set[asyncio.Future[Any]] = set()  # strong references to our asyncio tasks
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}  # tasks waiting out a backoff
        # Service tasks that became ready: DONE, yet running until shutdown (or their end),
        # with the backend that runs them (their records are gone: flow.stop_service asks it).
        self._services: dict[str, tuple[TaskFuture[Any], ExecutionBackend | None]] = {}
        self._closing: asyncio.Task[None] | None = None
        # Settling work found while settling (dependents to fail or cancel, blocks to stop),
        # done in order by the outermost _finish or _cancel: nothing recurses per task.
        self._work: deque[tuple[Any, ...]] = deque()
        self._draining = False
        self._stopping: set[str] = set()  # blocks asked to stop, each stopped once
        self.observers = tuple(observers)
        """This engine's own observers (the progress display, the journal...)."""
        self._results = results
        self.settings = settings
        """The configuration this engine was created from (``None`` when constructed
        directly): see :mod:`asyncflow.config`."""
        self._observers = _plugins.Observers(_plugins.plugin_manager(), self.observers)

    # -- creation and shutdown -------------------------------------------------------------

    @classmethod
    @awaitable_or_context
    async def create(cls, backend: str | ExecutionBackend | Sequence[str | ExecutionBackend]
                     | None = None, *, dry_run: bool = False, uid: str | None = None,
                     work_dir: str | Path | None = None, config: str | Path | None = None,
                     shutdown_timeout: float = 30.0, progress: Any = None,
                     journal: bool | None = None, resume: bool | str | None = None,
                     graph: bool | None = None, telemetry: bool | None = None,
                     observers: Sequence[object] = (), implicit_data: bool = True,
                     **options: Any) -> Self:
        """Build an engine, start its backends, and return it: ``await`` the call, or use it
        with ``async with``, which also shuts the engine down on exit.

        ``backend`` is a backend instance, a registered name (``"dask"``; ``options`` are then
        that backend's keyword options), or a list of them (the first is the default; tasks
        route to others with ``backend="name"``). Without it, the configuration decides
        (see the docs' Configuration page); with nothing configured it is ``concurrent``.
        ``dry_run=True`` replaces every backend with ``noop``: nothing is executed.
        ``shutdown_timeout`` bounds each step of :meth:`shutdown` (seconds).

        Observability (each off by default, ``None`` lets the configuration decide):
        ``progress=True`` draws a live display on a terminal; ``journal=True`` records every
        state change in ``work_dir/<uid>/journal.sqlite``; ``resume=True`` (or a run's uid)
        continues an earlier run, resolving the tasks it completed to their recorded results;
        ``graph=True`` records the task graph for :meth:`graph`; ``telemetry=True`` (or
        ``False``) turns OpenTelemetry on (off) for this engine, over ``telemetry`` in the
        configuration (needs asyncflow-otel, see the docs' Telemetry page). ``observers`` are
        plugin objects of this engine only (see :mod:`asyncflow.hookspecs`).

        ``implicit_data`` is accepted for RADICAL AsyncFlow's scripts and changes nothing:
        there it linked every file of a dependency's sandbox into its dependents' sandboxes;
        here files move only as the ``InputFile``/``OutputFile`` arguments of a task declare.
        """
        # The configuration layer turns settings into objects; the kernel only receives them.
        from asyncflow._setup import engine_arguments

        engine = cls(**engine_arguments(
            backend, options, config=config, dry_run=dry_run, uid=uid, work_dir=work_dir,
            shutdown_timeout=shutdown_timeout, progress=progress, journal=journal,
            resume=resume, graph=graph, telemetry=telemetry, observers=observers))
        await engine._start()
        return engine

    async def _start(self) -> None:
        run_dir = self.work_dir / self.uid
        started: list[ExecutionBackend] = []
        try:
            if self.settings is not None and self._observers.engine_configured:
                # Plugins read the keys they own: one may refuse them, or sit this engine out.
                self._observers.configure(engine=self, settings=self.settings)
            for backend in self.backends.values():
                backend.attach(self._on_update, self.loop)
                if backend.work_dir is None:
                    backend.work_dir = run_dir
                await backend.open()
                started.append(backend)
                self._submitters[backend] = Submitter(backend, self.loop, self._submit_failed)
        except BaseException as exc:
            for submitter in self._submitters.values():
                submitter.task.cancel()
            await asyncio.gather(*(b.close() for b in started), return_exceptions=True)
            if self._observers.engine_stopped:  # what they hold (a run's lock) is let go
                self._observers.call(self._observers.engine_stopped, engine=self, error=exc)
            raise
        _signals.install(self)
        _exit.guard(self)  # closes the engine if the program forgets to
        if self._observers.engine_started:
            self._observers.call(self._observers.engine_started, engine=self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.shutdown()

    async def shutdown(self, *, skip_execution_backend: bool = False) -> None:
        """Cancel every unfinished task and block, close the backends, refuse new work.

        Idempotent, safe to call concurrently and from inside a task or block: the work runs
        in its own task, which the caller's cancellation does not interrupt. It takes at most
        about twice :attr:`shutdown_timeout` (tasks, then backends), and leaves no task's
        future pending.
        """
        await asyncio.shield(self._begin_shutdown(skip_execution_backend))

    def _begin_shutdown(self, skip_backends: bool = False,
                        error: BaseException | None = None) -> asyncio.Task[None]:
        """Start the shutdown, once; every caller of :meth:`shutdown` waits for this task."""
        if self._closing is None:
            self._closing = self.loop.create_task(self._shutdown(skip_backends, error),
                                                  name=f"{self.uid} shutdown")
        return self._closing

    async def _shutdown(self, skip_backends: bool, error: BaseException | None) -> None:
        try:
            for record in list(self._records.values()):
                if not record.state.is_terminal:  # not settled by an earlier one's cancel
                    self._cancel(record, "the workflow engine is shutting down")
            # Block bodies and executable commands finish their cancellation; submits finish.
            for submitter in self._submitters.values():
                submitter.close()
            submits = [s.task for s in self._submitters.values()]
            for task in await self._outlast([*submits, *(t for t in self._tasks if not t.done())]):
                log.error("%s did not finish within %ss of shutdown", task, self.shutdown_timeout)
                if task in submits:  # the backend is closed next: stop waiting for it
                    task.cancel()
            for record in list(self._records.values()):  # a block body ignored its cancellation
                self._finish(record, TaskState.CANCELLED, "the workflow engine is shutting down")
            self._services.clear()  # closing their backends stops them
            if not skip_backends:
                closes = {self._spawn(b.close(), f"close {b.name}"): b
                          for b in self.backends.values()}
                late = await self._outlast(closes)
                for task, backend in closes.items():
                    if task in late:
                        task.cancel()
                        log.error("backend %r did not shut down within %ss", backend.name,
                                  self.shutdown_timeout)
                    elif not task.cancelled() and task.exception() is not None:
                        log.error("backend %r failed to shut down", backend.name,
                                  exc_info=task.exception())
        finally:
            if self._observers.engine_stopped:
                self._observers.call(self._observers.engine_stopped, engine=self, error=error)
            _exit.release(self)
            _signals.uninstall(self)  # last: a signal that stopped the engine acts after this

    async def _outlast(self, tasks: Iterable[asyncio.Future[Any]]) -> set[asyncio.Future[Any]]:
        """Wait up to :attr:`shutdown_timeout` for ``tasks``; return those still running.

        A cancellation does not cut the wait short: ``asyncio.run()`` cancels every task as
        soon as its main task ends, which the shutdown itself may cause (by cancelling the
        futures the main task awaits), and the backends must still be closed.
        """
        pending = set(tasks)
        deadline = self.loop.time() + self.shutdown_timeout
        while pending and (remaining := deadline - self.loop.time()) > 0:
            try:
                _, pending = await asyncio.wait(pending, timeout=remaining)
            except asyncio.CancelledError:
                continue
        return pending

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`shutdown` has begun."""
        return self._closing is not None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        counts = "".join(f" {k.lower()}={v}" for k, v in sorted(self.counts().items()))
        return f"<WorkflowEngine {self.uid} {state} backends={list(self.backends)}{counts}>"

    # -- services --------------------------------------------------------------------------

    async def stop_service(self, service: TaskFuture[Any]) -> bool:
        """Stop the service task ``service`` now rather than at shutdown.

        Before it is ready, this is ``service.cancel()``. Once it is ready (its future DONE,
        with its endpoint), the backend stops it, and the engine does not report that end as
        an exit (no ``asyncflow_service_exited``, no error logged); the future stays DONE.
        Returns once the backend has stopped it: ``True`` if it was running, ``False`` if it
        had already ended (or failed, or was cancelled).

        Raises:
            ValueError: ``service`` is a task of this engine that is not a service task.
        """
        entry = self._services.get(service.uid)
        if entry is not None and entry[0] is service:
            del self._services[service.uid]  # its end is ours now, not news to report
            backend = entry[1]
            if backend is None or backend.closed:
                return False
            return await backend.cancel(service.uid)
        record = service._record
        if record is None or record.engine is not self:  # finished: ended, failed, cancelled
            return False
        if not record.options.service:
            raise ValueError(f"task {record.name!r} ({record.uid}) is not a service task; "
                             "cancel it with its future's cancel()")
        return service.cancel()

    # -- workflow scopes -------------------------------------------------------------------

    def workflow_scope(self, workflow_id: str | None = None) -> WorkflowScope:
        """A scope for ``async with flow.workflow_scope("name") as wid:`` (or ``with``):
        every task and block called inside it, in this task and in the tasks it starts
        (``asyncio.gather``, ``create_task``), carries ``wid`` as its ``workflow_id``.

        ``None`` makes a new id, ``wf-`` and 8 hex digits. Scopes nest (the innermost
        wins); a block's body is a scope of its own, named by the block's uid; a call's
        ``workflow_id=`` keyword overrides the scope for that call.
        """
        if workflow_id is None:
            workflow_id = new_workflow_id()
        elif not isinstance(workflow_id, str) or not workflow_id:
            raise TypeError(f"workflow_scope() takes a non-empty string or None, not "
                            f"{workflow_id!r}")
        return WorkflowScope(self._workflow, workflow_id)

    # -- registration: a call becomes a record ---------------------------------------------

    def _register(self, kind: str, fn: Callable[..., Any], name: str, options: TaskOptions,
                  args: tuple[Any, ...], kwargs: dict[str, Any],
                  workflow_id: str | None = None) -> TaskFuture[Any]:
        if self._closing is not None:
            raise EngineClosedError(f"cannot run {name!r}: workflow engine {self.uid} is shut "
                                    "down")
        prefix = "block" if kind == BLOCK else "task"
        self._counters[prefix] += 1
        uid = f"{prefix}.{self._counters[prefix]:06d}"
        block = _current_block.get()
        if block is not None and block.engine is not self:
            block = None
        if workflow_id is None:
            workflow_id = self._workflow.get()
        record = TaskRecord(self, uid, name, kind, fn, args, kwargs, options, block, workflow_id)
        self._records[uid] = record
        if block is not None:
            assert block.members is not None
            block.members.add(record.future)
        try:
            self._link(record)
        except Exception as exc:  # a bug, not the caller's: the call still returns its future
            self._internal_error(record, exc)
        return record.future

    def _link(self, record: TaskRecord) -> None:
        """Count the record's unfinished dependencies; release it now if there are none."""
        bad_args: TypeError | None = None
        try:
            deps = _deps.futures_in(record.args, record.kwargs)
        except TypeError as exc:
            deps, bad_args = [], TypeError(f"task {record.name!r}: {exc}")
        if self._observers.task_created:
            self._observers.call(self._observers.task_created, engine=self, task=record,
                                 dependencies=deps)
        if bad_args is not None:
            self._finish(record, TaskState.FAILED, error=bad_args)
            return
        if not deps:  # an independent call, the most common kind: nothing to count
            self._release(record)
            return
        if len(deps) > 1:
            deps = list(dict.fromkeys(deps))  # each future counted once
        failed: list[TaskFuture[Any]] = []
        cancelled: TaskFuture[Any] | None = None
        record.has_futures = True
        for dep in deps:
            upstream = dep._record  # set while the task is unfinished
            if upstream is not None and upstream.engine is self:  # the usual case: wait for it
                record.waiting += 1
                if upstream.dependents is None:
                    upstream.dependents = [record]
                else:
                    upstream.dependents.append(record)
                continue
            if dep.get_loop() is not self.loop:
                self._finish(record, TaskState.FAILED, error=ValueError(
                    f"task {record.name!r} ({record.uid}): argument {dep!r} belongs to another "
                    "event loop; futures cannot cross event loops"))
                return
            if dep.done():
                if dep.cancelled():
                    cancelled = dep
                elif dep.exception() is not None:
                    failed.append(dep)
                continue
            record.waiting += 1  # a future of another engine: hear about it through asyncio
            dep.add_done_callback(functools.partial(self._upstream_done, record))
        if cancelled is not None:
            self._finish(record, TaskState.CANCELLED, _cancelled_because(cancelled))
        elif failed:
            self._fail_dependency(record, *failed)
        elif record.waiting == 0:
            self._release(record)

    def _upstream_done(self, record: TaskRecord, dep: TaskFuture[Any]) -> None:
        """A future of another engine, which ``record`` depends on, is done."""
        try:
            if record.state.is_terminal:
                return
            if dep.cancelled():
                self._finish(record, TaskState.CANCELLED, _cancelled_because(dep))
            elif dep.exception() is not None:
                self._fail_dependency(record, dep)
            else:
                record.waiting -= 1
                if record.waiting == 0:
                    self._release(record)
        except Exception as exc:  # raised into asyncio's callback runner, it would be lost
            self._internal_error(record, exc)

    def _fail_dependency(self, record: TaskRecord, dep: TaskFuture[Any],
                         *also_failed: TaskFuture[Any]) -> None:
        cause = dep.exception()
        root_task = f"{dep.name!r} ({dep.uid})"
        if isinstance(cause, DependencyFailureError):  # report the task that failed first
            root_task = cause.root_task or root_task
            cause = cause.root_cause
        error = DependencyFailureError(
            f"Cannot execute {record.name!r} due to dependency failure: {record.uid} was not "
            f"run because {root_task} failed with {type(cause).__name__}: {cause}",
            failed_dependencies=[dep.name, *(d.name for d in also_failed)], root_cause=cause,
            root_task=root_task)
        self._finish(record, TaskState.FAILED, error=error)

    # -- release: a record with all dependencies done goes to its backend ------------------

    def _release(self, record: TaskRecord) -> None:
        if self._results is not None and record.kind != BLOCK:
            found, value = self._results.recall(record)
            if found:  # completed in an earlier session of this run: do not run it again
                record.resumed = True
                self._finish(record, TaskState.DONE, value)
                return
        if record.kind == FUNCTION:  # resolved in _enqueue, where its backend is known
            self._enqueue(record)
            return
        if record.has_futures:
            record.has_futures = False
            record.args = _deps.resolve(record.args)
            if record.kwargs:
                record.kwargs = _deps.resolve(record.kwargs)
        record.body = self._spawn(self._run_body(record), record.uid)
        if record.kind == BLOCK:
            self._set_state(record, TaskState.RUNNING)

    async def _run_body(self, record: TaskRecord) -> None:
        """Run a block's body, or an executable's or a prompt's (which returns its command
        or its prompt), on this loop.

        It runs after the record's dependencies resolved, so it can use their values.
        """
        is_block = record.kind == BLOCK
        if is_block:  # this task runs in its own copy of the context
            _current_block.set(record)
            self._workflow.set(record.uid)  # a block is a workflow scope of its own
        try:
            value = record.fn(*record.args, **record.kwargs)
            if asyncio.iscoroutine(value):
                value = await value
            if not is_block and (not isinstance(value, str) or not value.strip()):
                what = "string prompt" if record.kind == PROMPT else "command string"
                raise ValueError(f"{record.kind} task {record.name!r} must return a non-empty "
                                 f"{what}, not {value!r}")
        except asyncio.CancelledError as exc:
            self._finish(record, TaskState.CANCELLED, exc.args[0] if exc.args else None)
            raise
        except Exception as exc:
            self._finish(record, TaskState.FAILED, error=exc)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: this task, not the loop
            self._finish(record, TaskState.FAILED,
                         error=TaskExitError(f"{record.name!r} ({record.uid})", exc))
        else:
            if is_block:
                self._finish(record, TaskState.DONE, value)
            else:
                record.body = None
                record.command = value
                self._enqueue(record)

    def _enqueue(self, record: TaskRecord) -> None:
        try:
            backend = self._backend_for(record)
            if record.has_futures:  # values, or refs to results this backend kept
                record.has_futures = False
                record.args = _deps.resolve(record.args, backend)
                if record.kwargs:
                    record.kwargs = _deps.resolve(record.kwargs, backend)
            record.spec = self._spec(record, backend)
        except Exception as exc:
            self._finish(record, TaskState.FAILED, error=exc)
            return
        self._submitters[backend].add(record.spec)

    def _backend_for(self, record: TaskRecord) -> ExecutionBackend:
        backend = record.backend_instance
        if backend is None:
            name = record.options.backend
            if name is None:
                name, backend = self.default_backend, self.backend
            else:
                try:
                    backend = self.backends[name]
                except KeyError:
                    raise UnknownBackendError(
                        f"task {record.name!r} ({record.uid}) asks for backend {name!r}, but "
                        f"this engine has {', '.join(map(repr, self.backends))}") from None
            record.backend_instance = backend
            record.backend = name
        return backend

    def _spec(self, record: TaskRecord, backend: ExecutionBackend) -> TaskSpec:
        options = record.options
        desc = options.description
        caps = backend.capabilities
        kind = _KINDS[record.kind]
        # The usual case, a function task on a backend that runs functions, is settled by two
        # attribute reads; anything else goes through the full check.
        if kind is not TaskKind.FUNCTION or not caps.function_tasks or options.service or (
                options.timeout is not None and not caps.timeouts):
            missing = caps.missing(
                function_tasks=kind is TaskKind.FUNCTION,
                executable_tasks=kind is TaskKind.EXECUTABLE,
                prompt_tasks=kind is TaskKind.PROMPT,
                capture_stdio=options.capture_stdio and kind is TaskKind.EXECUTABLE,
                timeouts=options.timeout is not None,
                services=options.service,
            )
            if missing:
                raise CapabilityError(
                    f"task {record.name!r} ({record.uid}) needs {' and '.join(missing)}, "
                    f"which backend {backend.name!r} ({type(backend).__name__}) does not "
                    "provide")
        inputs, outputs = _deps.NO_FILES  # InputFile/OutputFile arguments, for staging
        if caps.file_staging and (record.args or record.kwargs):
            inputs, outputs = _deps.files_in(record.args, record.kwargs)
        if kind is TaskKind.FUNCTION:
            fn = record.fn
            if options.retry is not None:  # the body can ask for its attempt
                fn = with_attempt(fn, record.attempt, options.is_coroutine)
            spec = _function_spec(record.uid, record.name, fn, record.args, record.kwargs, desc,
                                  options.timeout, record.attempt, options.is_coroutine, inputs,
                                  outputs)
            if options.service:
                spec = spec._replace(service=readiness(record.name, desc))
            return spec
        command = record.command
        assert command is not None
        if kind is TaskKind.PROMPT:
            return TaskSpec(record.uid, record.name, kind, description=desc,
                            timeout=options.timeout, attempt=record.attempt, prompt=command)
        shell = bool(desc.get("shell", False))
        stdout = stderr = None
        if options.capture_stdio:
            run_dir = backend.work_dir or self.work_dir / self.uid
            stdout, stderr = run_dir / f"{record.uid}.stdout", run_dir / f"{record.uid}.stderr"
        extra = {k: v for k, v in desc.items() if k not in _SPEC_KEYS}
        return TaskSpec(record.uid, record.name, kind, command=command if shell
                        else executables.argv(command, record.name), shell=shell, description=extra,
                        env=desc.get("env"), cwd=desc.get("cwd"), stdout=stdout,
                        stderr=stderr, timeout=options.timeout, attempt=record.attempt,
                        input_files=inputs, output_files=outputs,
                        service=readiness(record.name, desc) if options.service else None)

    def _submit_failed(self, backend: ExecutionBackend, specs: list[TaskSpec],
                       exc: Exception) -> None:
        """A ``submit`` raised: every task of its batch still in flight fails with it."""
        for spec in specs:
            record = self._records.get(spec.uid)
            if record is None or record.spec is not spec:
                continue
            try:
                error = BackendError(f"backend {backend.name!r} failed to submit task "
                                     f"{spec.name!r} ({spec.uid}): {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            except Exception as internal:  # e.g. an exception whose str() raises
                self._internal_error(record, internal)
            else:
                self._finish(record, TaskState.FAILED, error=error)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- reports: backends tell what happened ----------------------------------------------

    def _on_update(self, update: TaskUpdate) -> None:
        record = self._records.get(update.uid)
        if record is None or record.spec is None:
            if update.uid in self._services:
                self._service_exited(update)
                return
            log.debug("ignoring a report for %s, which is not in flight: %s", update.uid,
                      update.state)
            return
        try:
            state = update.state
            if state is TaskState.RUNNING:
                if record.state is TaskState.PENDING:
                    self._set_state(record, TaskState.RUNNING)
            elif state is TaskState.DONE:
                if update.ref is not None:
                    record.future._ref = (record.backend_instance, update.ref)
                if record.options.service:
                    self._services[record.uid] = (record.future, record.backend_instance)
                self._finish(record, TaskState.DONE, update.value)
            elif state is TaskState.FAILED:
                policy = record.options.retry
                if policy is None or not self._retry(record, policy, update.error):
                    self._finish(record, TaskState.FAILED, error=update.error)
            elif state is TaskState.CANCELLED:
                self._finish(record, TaskState.CANCELLED)
            else:
                raise ValueError(f"backend {record.backend!r} reported {state!r}, which is not "
                                 "a TaskState")
        except Exception as exc:  # raised into the backend's report, it would be lost
            self._internal_error(record, exc)

    def _service_exited(self, update: TaskUpdate) -> None:
        """A ready service ended on its own: its future is long settled, so say it aloud."""
        service, _ = self._services.pop(update.uid)
        if self._closing is not None:  # stopped by the shutdown, as it should be
            return
        error = update.error
        log.error("service %r (%s) stopped while the workflow was running: %s", service.name,
                  service.uid, error)
        if self._observers.service_exited:
            self._observers.call(self._observers.service_exited, engine=self, service=service,
                                 error=error)

    def _retry(self, record: TaskRecord, policy: RetryPolicy,
               error: BaseException | None) -> bool:
        """Run a failed task again after its backoff, if its policy says so."""
        try:
            again = policy.should_retry(record.attempt, error)
        except Exception:  # a broken predicate fails the task, not the engine
            log.exception("retry_on of task %s (%s) raised; not retrying", record.name,
                          record.uid)
            again = False
        if not again:
            return False
        delay = policy.delay(record.attempt)
        log.info("task %s (%s) failed on attempt %d (%r); retrying in %.3gs", record.name,
                 record.uid, record.attempt, error, delay)
        record.error = error
        record.attempt += 1
        record.spec = None
        self._set_state(record, TaskState.PENDING)
        if delay > 0:  # a timer, not a sleep: nothing waits while the backoff runs
            self._retry_timers[record.uid] = self.loop.call_later(delay, self._resubmit, record)
        else:
            self._enqueue(record)
        return True

    def _resubmit(self, record: TaskRecord) -> None:
        del self._retry_timers[record.uid]
        self._enqueue(record)

    # -- state changes ---------------------------------------------------------------------

    def _set_state(self, record: TaskRecord, new: TaskState) -> None:
        old = record.state
        if new not in NEXT_STATES[old]:  # an engine bug: say so rather than mislead observers
            raise RuntimeError(f"task {record.name!r} ({record.uid}) cannot go from {old} to "
                               f"{new}: not a state change of the task lifecycle")
        record.state = new
        record.future.state = new
        if self._observers.task_state_changed:
            self._observers.call(self._observers.task_state_changed, engine=self, task=record,
                                 old=old, new=new)

    def _finish(self, record: TaskRecord, state: TaskState, value: Any = None,
                error: BaseException | None = None) -> None:
        """Settle a record's future, forget the record, and settle what follows from it: its
        dependents released, failed or cancelled, a cancelled block's members cancelled.

        ``value`` is the result of a DONE task, and the message of a CANCELLED one. What
        follows is queued and worked off by the outermost call, so nothing recurses per task
        or per level, whatever the depth of the graph.
        """
        if self._draining:
            self._work.append((self._settle, record, state, value, error))
            return
        self._draining = True  # the usual case, a task settled by a report, without a queue
        try:
            self._settle(record, state, value, error)
        except Exception as exc:
            self._internal_error(record, exc)
        finally:
            self._draining = False
        if self._work:
            self._drain()

    def _cancel(self, record: TaskRecord, msg: Any = None) -> bool:
        """What ``TaskFuture.cancel()`` does for a task that has not finished; the
        cancellations it leads to are queued like :meth:`_finish`'s work."""
        self._work.append((self._stop, record, msg))
        if not self._draining:
            self._drain()
        return True

    def _internal_error(self, record: TaskRecord, exc: Exception) -> None:
        """The engine's own code raised while handling ``record``: log it once, fail the
        task with an :class:`EngineInternalError` and settle what waits on it."""
        self._work.append((self._fail_internally, record, exc))
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        """Do every queued step, in order, those queued meanwhile included. A step that
        raises is a bug: its task fails with an :class:`EngineInternalError`, the rest go on."""
        self._draining = True
        work = self._work
        try:
            while work:
                step, record, *args = work.popleft()
                try:
                    step(record, *args)
                except Exception as exc:
                    self._internal_error(record, exc)
        finally:
            self._draining = False

    def _settle(self, record: TaskRecord, state: TaskState, value: Any,
                error: BaseException | None) -> None:
        if record.state.is_terminal:
            return
        # Settle the future first: observers of the terminal state can read its outcome.
        future = record.future
        future._record = None
        if state is TaskState.DONE:
            future.set_result(value)
        elif state is TaskState.FAILED:
            record.error = error if error is not None else BackendError(
                f"task {record.name!r} ({record.uid}) failed without an error")
            future.set_exception(record.error)
            # Mark it retrieved: a failure the user never awaits (an intermediate task whose
            # dependents report it, a fire-and-forget call) is not a forgotten error to log.
            future.exception()
        else:
            asyncio.Future.cancel(future, value)
        self._set_state(record, state)
        self._records.pop(record.uid, None)
        if self._retry_timers:  # cancelled or shut down while waiting out a backoff
            timer = self._retry_timers.pop(record.uid, None)
            if timer is not None:
                timer.cancel()
        if record.members is not None:  # a block
            self._stopping.discard(record.uid)
            if state is TaskState.CANCELLED:  # a cancelled block takes its members along
                for member in list(record.members):
                    member.cancel()  # queued: we are draining
        dependents, record.dependents = record.dependents, None
        if dependents:
            self._settle_dependents(dependents, future)
        if record.block is not None:
            parent = self._records.get(record.block)
            if parent is not None and parent.members is not None:
                parent.members.discard(future)
        record.args = record.kwargs = ()  # type: ignore[assignment]

    def _settle_dependents(self, dependents: list[TaskRecord], future: TaskFuture[Any]) -> None:
        """Release, fail or cancel the records waiting on ``future``, which is done."""
        state = future.state
        for dependent in dependents:
            if dependent.state.is_terminal:
                continue
            try:
                if state is TaskState.DONE:
                    dependent.waiting -= 1
                    if dependent.waiting == 0:
                        self._release(dependent)
                elif state is TaskState.FAILED:
                    self._fail_dependency(dependent, future)
                else:
                    self._finish(dependent, TaskState.CANCELLED, _cancelled_because(future))
            except Exception as exc:
                self._internal_error(dependent, exc)

    def _stop(self, record: TaskRecord, msg: Any) -> None:
        if record.state.is_terminal:
            return
        if record.kind == BLOCK and record.body is not None and not record.body.done():
            if record.uid in self._stopping:  # reached again, through its body's await
                return
            self._stopping.add(record.uid)
            for member in list(record.members or ()):
                member.cancel(msg)  # queued, as is the awaited future Task.cancel cancels
            record.body.cancel(msg)  # the body's end settles the block as CANCELLED...
            if _not_started(record.body):  # ...unless it never runs: cancelled before its start
                self._settle(record, TaskState.CANCELLED, msg, None)
            return
        if record.body is not None and not record.body.done():
            record.body.cancel(msg)
        spec, backend = record.spec, record.backend_instance
        self._settle(record, TaskState.CANCELLED, msg, None)  # now: a second _stop is a no-op
        if spec is None or backend is None or backend.closed:
            return
        if not self._submitters[backend].withdraw(spec):  # already submitted: ask the backend
            self._spawn(self._cancel_in_backend(backend, spec.uid), f"cancel {spec.uid}")

    def _fail_internally(self, record: TaskRecord, exc: Exception) -> None:
        # Without _settle, which may be what raised; and never raising itself.
        try:
            log.error("internal error while handling task %r (%s); it fails, the workflow "
                      "goes on", record.name, record.uid, exc_info=exc)
            future = record.future
            if not future.done():
                error = EngineInternalError(
                    f"internal error in the AsyncFlow engine while handling task "
                    f"{record.name!r} ({record.uid}): {_describe(exc)}")
                error.__cause__ = exc
                future._record = None
                record.error = error
                asyncio.Future.set_exception(future, error)
                future.exception()
            if not record.state.is_terminal:  # as the future ended, if it had before the fault
                self._set_state(record, TaskState.CANCELLED if future.cancelled() else
                                TaskState.FAILED if future.exception() else TaskState.DONE)
            self._records.pop(record.uid, None)
            self._stopping.discard(record.uid)
            dependents, record.dependents = record.dependents, None
            if dependents:
                self._settle_dependents(dependents, future)
        except Exception:
            log.critical("cannot fail task %r (%s) after an internal error", record.name,
                         record.uid, exc_info=True)

    async def _cancel_in_backend(self, backend: ExecutionBackend, uid: str) -> None:
        try:
            await backend.cancel(uid)
        except Exception:
            log.exception("backend %r failed to cancel %s", backend.name, uid)

    # -- introspection ---------------------------------------------------------------------

    def tasks(self) -> Iterable[TaskRecord]:
        """The records of every task and block that has not finished."""
        return list(self._records.values())

    def graph(self) -> TaskGraph:
        """The graph of every task and block called so far, finished ones included: export
        it with ``.to_mermaid()``, ``.to_dot()`` or ``.write(path)``.

        Recorded only for engines created with ``graph=True`` (the engine keeps no finished
        task otherwise); with ``dry_run=True`` too, it is the plan of a workflow, not run.
        """
        for observer in self.observers:  # the graph observer, which owns the graph
            graph: TaskGraph | None = getattr(observer, "task_graph", None)
            if graph is not None:
                return graph
        raise RuntimeError(f"engine {self.uid} does not record its task graph; create it "
                           "with WorkflowEngine.create(graph=True)")

    def counts(self) -> Mapping[str, int]:
        """How many unfinished tasks are in each state."""
        counts: dict[str, int] = {}
        for record in self._records.values():
            counts[record.state] = counts.get(record.state, 0) + 1
        return counts


def _not_started(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` has not taken its first step: cancelled now, its coroutine is closed
    without running a line (no ``except``, no ``finally``)."""
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


def _describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, even when its ``str()`` raises."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__} (its message cannot be shown)"


def _cancelled_because(dep: TaskFuture[Any]) -> str:
    """The cancel message of a task whose dependency ``dep`` was cancelled."""
    return f"its dependency {dep.name!r} ({dep.uid}) was cancelled"
