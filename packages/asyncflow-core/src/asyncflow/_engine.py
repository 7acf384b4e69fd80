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
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from asyncflow import _deps, _exit, _plugins, _signals
from asyncflow._creation import awaitable_or_context
from asyncflow._decorators import DecoratorsMixin
from asyncflow._submitter import Submitter
from asyncflow._task import BLOCK, EXECUTABLE, FUNCTION, TaskFuture, TaskOptions, TaskRecord
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
    UnknownBackendError,
)
from asyncflow.retries import RetryPolicy, with_attempt

if TYPE_CHECKING:
    from asyncflow.graph import TaskGraph
    from asyncflow.journal import Journal

__all__ = ["WorkflowEngine"]

log = logging.getLogger("asyncflow.engine")

# The block whose body is running, so tasks called inside it become its members.
_current_block: contextvars.ContextVar[TaskRecord | None] = contextvars.ContextVar(
    "asyncflow_block", default=None)

_SPEC_KEYS = ("shell", "cwd", "env")  # task_description keys the engine turns into TaskSpec fields


class WorkflowEngine(DecoratorsMixin):
    """Runs tasks on execution backends. Create it with ``await WorkflowEngine.create(...)``
    and close it with ``await flow.shutdown()``, or use ``async with
    WorkflowEngine.create(...) as flow:``, which shuts it down on exit.
    """

    def __init__(self, backends: Mapping[str, ExecutionBackend] | Sequence[ExecutionBackend], *,
                 uid: str | None = None, work_dir: str | Path | None = None,
                 dry_run: bool = False, shutdown_timeout: float = 30.0, progress: Any = False,
                 journal: bool = False, resume: bool = False, graph: bool = False,
                 dag_file: str | Path | None = None) -> None:
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
        # Function and executable tasks share the "task." uids, blocks have their own.
        self._counters = {"task": 0, "block": 0}
        self._submitters: dict[ExecutionBackend, Submitter] = {}  # made when the engine starts
        self._tasks: set[asyncio.Future[Any]] = set()  # strong references to our asyncio tasks
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}  # tasks waiting out a backoff
        self._closing: asyncio.Task[None] | None = None
        # Observability, each off unless asked for (see the docs' Observability page).
        from asyncflow.progress import console_for

        self.progress = console_for(progress)
        """The rich console showing the live progress display, if there is one."""
        self.journal: Journal | None = None
        """The run journal (``journal=True``), opened when the engine starts."""
        self._journal_wanted = journal or resume
        self._resuming: Journal | None = None  # the journal that answers resume lookups
        self._resume = resume
        self.dag_file = Path(dag_file) if dag_file is not None else None
        self.task_graph: TaskGraph | None = None
        if graph or dag_file is not None:
            from asyncflow.graph import TaskGraph

            self.task_graph = TaskGraph()
        opt_in = [name for name, on in (("progress", self.progress is not None),
                                        ("journal", self._journal_wanted),
                                        ("graph", self.task_graph is not None)) if on]
        for name in opt_in:
            _plugins.use_builtin(name)
        self._observers = _plugins.Observers(_plugins.plugin_manager(), opt_in)

    # -- creation and shutdown -------------------------------------------------------------

    @classmethod
    @awaitable_or_context
    async def create(cls, backend: str | ExecutionBackend | Sequence[str | ExecutionBackend]
                     | None = None, *, dry_run: bool = False, uid: str | None = None,
                     work_dir: str | Path | None = None, config: str | Path | None = None,
                     progress: Any = None, journal: bool | None = None,
                     resume: bool | str | None = None, graph: bool | None = None,
                     **options: Any) -> Self:
        """Build an engine, start its backends, and return it: ``await`` the call, or use it
        with ``async with``, which also shuts the engine down on exit.

        ``backend`` is a backend instance, a registered name (``"dask"``; ``options`` are then
        that backend's keyword options), or a list of them (the first is the default; tasks
        route to others with ``backend="name"``). Without it, the configuration decides
        (see the docs' Configuration page); with nothing configured it is ``concurrent``.
        ``dry_run=True`` replaces every backend with ``noop``: nothing is executed.

        Observability (each off by default, ``None`` lets the configuration decide):
        ``progress=True`` draws a live display on a terminal; ``journal=True`` records every
        state change in ``work_dir/<uid>/journal.sqlite``; ``resume=True`` (or a run's uid)
        continues an earlier run, resolving the tasks it completed to their recorded results;
        ``graph=True`` records the task graph for :meth:`graph`.
        """
        from asyncflow._config import resolve_backends
        from asyncflow.config import load

        settings = None
        if progress is None or journal is None or resume is None or graph is None:
            settings = load(config)
        dag_file = None
        if settings is not None:
            progress = settings.progress if progress is None else progress
            journal = settings.journal if journal is None else journal
            resume = settings.resume if resume is None else resume
            dag_file = settings.dag if graph is None else None
        if resume:
            from asyncflow.journal import find_run

            uid = find_run(Path(work_dir) if work_dir is not None else Path.cwd(), resume, uid)
        backends = resolve_backends(backend, options, config=config, dry_run=dry_run)
        engine = cls(backends, uid=uid, work_dir=work_dir, dry_run=dry_run, progress=progress,
                     journal=bool(journal), resume=bool(resume), graph=bool(graph),
                     dag_file=dag_file)
        await engine._start()
        return engine

    async def _start(self) -> None:
        run_dir = self.work_dir / self.uid
        if self._journal_wanted:
            from asyncflow.journal import Journal

            self.journal = Journal(run_dir, self, resume=self._resume)
            if self._resume:
                self._resuming = self.journal
        started: list[ExecutionBackend] = []
        try:
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
            if self.journal is not None:
                self.journal.close(exc)
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
                self._finish(record, TaskState.CANCELLED)
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

    # -- registration: a call becomes a record ---------------------------------------------

    def _register(self, kind: str, fn: Callable[..., Any], name: str, options: TaskOptions,
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskFuture[Any]:
        if self._closing is not None:
            raise EngineClosedError(f"cannot run {name!r}: workflow engine {self.uid} is shut "
                                    "down")
        prefix = "block" if kind == BLOCK else "task"
        self._counters[prefix] += 1
        uid = f"{prefix}.{self._counters[prefix]:06d}"
        block = _current_block.get()
        if block is not None and block.engine is not self:
            block = None
        record = TaskRecord(self, uid, name, kind, fn, args, kwargs, options, block)
        self._records[uid] = record
        if block is not None:
            assert block.members is not None
            block.members.add(record.future)
        self._link(record)
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

    def _fail_dependency(self, record: TaskRecord, dep: TaskFuture[Any],
                         *also_failed: TaskFuture[Any]) -> None:
        cause = dep.exception()
        root_task = f"{dep.name!r} ({dep.uid})"
        if isinstance(cause, DependencyFailureError):  # report the task that failed first
            root_task = cause.root_task or root_task
            cause = cause.root_cause
        error = DependencyFailureError(
            f"Cannot execute {record.name!r} ({record.uid}) due to dependency failure: "
            f"{root_task} failed with {type(cause).__name__}: {cause}",
            failed_dependencies=[dep.name, *(d.name for d in also_failed)], root_cause=cause,
            root_task=root_task)
        self._finish(record, TaskState.FAILED, error=error)

    # -- release: a record with all dependencies done goes to its backend ------------------

    def _release(self, record: TaskRecord) -> None:
        if self._resuming is not None and record.kind != BLOCK:
            found, value = self._resuming.recall(record)
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
        """Run a block's body, or an executable's (which returns its command), on this loop.

        It runs after the record's dependencies resolved, so it can use their values.
        """
        is_block = record.kind == BLOCK
        if is_block:
            _current_block.set(record)  # this task runs in its own copy of the context
        try:
            value = record.fn(*record.args, **record.kwargs)
            if asyncio.iscoroutine(value):
                value = await value
            if not is_block and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"executable task {record.name!r} must return a non-empty "
                                 f"command string, not {value!r}")
        except asyncio.CancelledError as exc:
            self._finish(record, TaskState.CANCELLED, exc.args[0] if exc.args else None)
            raise
        except Exception as exc:
            self._finish(record, TaskState.FAILED, error=exc)
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
        backend = record.executor
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
            record.executor = backend
            record.backend = name
        return backend

    def _spec(self, record: TaskRecord, backend: ExecutionBackend) -> TaskSpec:
        options = record.options
        desc = options.description
        caps = backend.capabilities
        kind = TaskKind.EXECUTABLE if record.kind == EXECUTABLE else TaskKind.FUNCTION
        # The usual case, a function task on a backend that runs functions, is settled by two
        # attribute reads; anything else goes through the full check.
        if kind is not TaskKind.FUNCTION or not caps.function_tasks or (
                options.timeout is not None and not caps.timeouts):
            missing = caps.missing(
                function_tasks=kind is TaskKind.FUNCTION,
                executable_tasks=kind is TaskKind.EXECUTABLE,
                capture_stdio=options.capture_stdio and kind is TaskKind.EXECUTABLE,
                timeouts=options.timeout is not None,
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
            return _function_spec(record.uid, record.name, fn, record.args, record.kwargs, desc,
                                  options.timeout, record.attempt, options.is_coroutine, inputs,
                                  outputs)
        command = record.command
        assert command is not None
        shell = bool(desc.get("shell", False))
        stdout = stderr = None
        if options.capture_stdio:
            run_dir = backend.work_dir or self.work_dir / self.uid
            stdout, stderr = run_dir / f"{record.uid}.stdout", run_dir / f"{record.uid}.stderr"
        extra = {k: v for k, v in desc.items() if k not in _SPEC_KEYS}
        return TaskSpec(record.uid, record.name, kind, command=command if shell
                        else tuple(shlex.split(command)), shell=shell, description=extra,
                        env=desc.get("env"), cwd=desc.get("cwd"), stdout=stdout,
                        stderr=stderr, timeout=options.timeout, attempt=record.attempt,
                        input_files=inputs, output_files=outputs)

    def _submit_failed(self, backend: ExecutionBackend, specs: list[TaskSpec],
                       exc: Exception) -> None:
        """A ``submit`` raised: every task of its batch still in flight fails with it."""
        for spec in specs:
            record = self._records.get(spec.uid)
            if record is not None and record.spec is spec:
                error = BackendError(f"backend {backend.name!r} failed to submit task "
                                     f"{spec.name!r} ({spec.uid}): {type(exc).__name__}: {exc}")
                error.__cause__ = exc
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
            log.debug("ignoring a report for %s, which is not in flight: %s", update.uid,
                      update.state)
            return
        state = update.state
        if state is TaskState.RUNNING:
            if record.state is TaskState.PENDING:
                self._set_state(record, TaskState.RUNNING)
        elif state is TaskState.DONE:
            if update.ref is not None:
                record.future._ref = (record.executor, update.ref)
            self._finish(record, TaskState.DONE, update.value)
        elif state is TaskState.FAILED:
            policy = record.options.retry
            if policy is None or not self._retry(record, policy, update.error):
                self._finish(record, TaskState.FAILED, error=update.error)
        elif state is TaskState.CANCELLED:
            self._finish(record, TaskState.CANCELLED)

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
        record.state = new
        record.future.state = new
        if self._observers.task_state_changed:
            self._observers.call(self._observers.task_state_changed, engine=self, task=record,
                                 old=old, new=new)

    def _finish(self, record: TaskRecord, state: TaskState, value: Any = None,
                error: BaseException | None = None) -> None:
        """Settle a record's future, forget the record, and release its dependents.

        ``value`` is the result of a DONE task, and the message of a CANCELLED one.
        """
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
        if state is TaskState.CANCELLED and record.members:
            for member in list(record.members):  # a cancelled block takes its members along
                member.cancel()
        dependents, record.dependents = record.dependents or (), None
        for dependent in dependents:
            if dependent.state.is_terminal:
                continue
            if state is TaskState.DONE:
                dependent.waiting -= 1
                if dependent.waiting == 0:
                    self._release(dependent)
            elif state is TaskState.FAILED:
                self._fail_dependency(dependent, future)
            else:
                self._finish(dependent, TaskState.CANCELLED, _cancelled_because(future))
        if record.block is not None:
            parent = self._records.get(record.block)
            if parent is not None and parent.members is not None:
                parent.members.discard(future)
        record.args = record.kwargs = ()  # type: ignore[assignment]

    def _cancel(self, record: TaskRecord, msg: Any = None) -> bool:
        """What ``TaskFuture.cancel()`` does for a task that has not finished."""
        if record.kind == BLOCK and record.body is not None and not record.body.done():
            for member in list(record.members or ()):
                member.cancel(msg)
            record.body.cancel(msg)  # the body's end settles the block as CANCELLED...
            if _not_started(record.body):  # ...unless it never runs: cancelled before its start
                self._finish(record, TaskState.CANCELLED, msg)
            return True
        if record.body is not None and not record.body.done():
            record.body.cancel(msg)
        spec, backend = record.spec, record.executor
        self._finish(record, TaskState.CANCELLED, msg)
        if spec is None or backend is None or backend.closed:
            return True
        if not self._submitters[backend].withdraw(spec):  # already submitted: ask the backend
            self._spawn(self._cancel_in_backend(backend, spec.uid), f"cancel {spec.uid}")
        return True

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
        if self.task_graph is None:
            raise RuntimeError(f"engine {self.uid} does not record its task graph; create it "
                               "with WorkflowEngine.create(graph=True)")
        return self.task_graph

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


def _cancelled_because(dep: TaskFuture[Any]) -> str:
    """The cancel message of a task whose dependency ``dep`` was cancelled."""
    return f"its dependency {dep.name!r} ({dep.uid}) was cancelled"
