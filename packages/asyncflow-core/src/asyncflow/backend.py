"""The execution-backend contract: where tasks run.

A backend is a small asynchronous object with four methods and one way back to the engine.
The engine builds a :class:`TaskSpec` for every task that is ready to run, hands batches of
them to :meth:`ExecutionBackend.submit`, and learns what happened to each one from the
:class:`TaskUpdate` objects the backend passes to :meth:`ExecutionBackend.report`.

Life cycle of a backend, as the engine drives it:

1. ``__init__(**options)``: keyword-only, typed options; nothing is started here. Every
   backend also takes RADICAL AsyncFlow's forms: a dict of options as the first positional
   argument, and ``name=``, the routing name of this instance (see
   :meth:`ExecutionBackend.__init_subclass__`).
2. ``await start()``: acquire resources (pools, clusters, pilots). Called once.
3. ``await submit(tasks)``: any number of times, with batches of ready tasks.
4. ``await cancel(uid)``: best effort; ``True`` if the backend will stop the task.
5. ``await shutdown()``: release everything; work still in flight is cancelled. Called once.

Users start a backend with ``await backend`` or ``async with backend``; the engine starts one
it is given if that has not happened yet. ``open()`` and ``close()`` are the idempotent,
concurrency-safe wrappers the framework calls, so ``start`` and ``shutdown`` run at most once.

For every task it accepts, a backend reports ``RUNNING`` when the body starts (optional but
expected) and then exactly one terminal update: ``DONE`` with the value, ``FAILED`` with the
exception, or ``CANCELLED``. A second terminal update for one task is a contract violation, and
the conformance kit in :mod:`asyncflow.testing` catches it.

A backend that keeps results where they were computed (a Dask worker's memory) may add a
``ref`` to a ``DONE`` update. The engine keeps it with the task's future, and when that result
is an argument of a later task *on the same backend*, it puts the ref in the later task's spec
instead of the value, so the data need not travel back through the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import functools
import inspect
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

if TYPE_CHECKING:
    from asyncflow.services import Readiness

from asyncflow.errors import BackendOptionError, TaskExitError

__all__ = [
    "Capabilities",
    "ExecutionBackend",
    "TaskKind",
    "TaskSpec",
    "TaskState",
    "TaskUpdate",
]


class TaskState(enum.StrEnum):
    """The state of a task; a ``TaskFuture.state`` is one of these (they compare equal to str)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


class TaskKind(enum.StrEnum):
    """What a backend is asked to run."""

    FUNCTION = "function"  #: call ``spec.function(*spec.args, **spec.kwargs)``
    EXECUTABLE = "executable"  #: run ``spec.command``; the result is its stdout
    PROMPT = "prompt"  #: answer ``spec.prompt`` (a model's completion); the result is the answer


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do. The engine refuses, on that task's future and before submission,
    a task that needs a capability its backend does not declare.
    """

    function_tasks: bool = True
    """Runs Python callables (sync ``def`` and ``async def``)."""
    executable_tasks: bool = False
    """Runs commands (argv, or a shell string when ``spec.shell``)."""
    cancel_running: bool = False
    """Can stop a task whose body has started (not just one still queued)."""
    capture_stdio: bool = False
    """Writes stdout/stderr of executables to ``spec.stdout``/``spec.stderr`` files."""
    timeouts: bool = False
    """Enforces ``spec.timeout`` by stopping the task and failing it with ``TaskTimeoutError``."""
    file_staging: bool = False
    """Honours ``InputFile``/``OutputFile`` arguments by staging files between tasks."""
    resources: bool = False
    """Honours per-task resources in ``spec.description`` (ranks, cores, gpus, ...)."""
    remote_workers: bool = False
    """Runs tasks outside this process's machine; arguments and results are serialized."""
    prompt_tasks: bool = False
    """Answers prompts (``TaskKind.PROMPT``): sends ``spec.prompt`` with ``spec.description``
    to a language model, or whatever completes text, and reports the answer as the value."""
    services: bool = False
    """Runs service tasks (``spec.service`` set): reports ``DONE`` with a
    :class:`~asyncflow.services.ServiceEndpoint` once the service is ready, keeps it running
    until shutdown, and if it ends on its own after that, reports one ``FAILED`` with
    :class:`~asyncflow.ServiceExitedError` (the only report allowed after a terminal one).
    ``cancel(uid)`` stops a service before it is ready (reported ``CANCELLED``) and after
    (``flow.stop_service``: nothing more is reported), returning once it is stopped."""

    def missing(self, **needed: bool) -> list[str]:
        """Names among ``needed`` that are requested (``True``) but not provided."""
        return [name for name, wanted in needed.items() if wanted and not getattr(self, name)]


def _frozen(self: object, name: str, value: Any = None) -> None:
    # What a frozen dataclass raises, for code that catches that.
    raise FrozenInstanceError(f"cannot assign to field {name!r} of {type(self).__name__}")


_new_tuple = tuple.__new__  # skips the named tuple's own argument handling: all are given


class _TaskSpecFields(NamedTuple):
    # The attributes of TaskSpec, in order (TaskSpec.__new__ gives them all).

    uid: str
    """Unique within the engine, e.g. ``task.000042``; the key of every report."""
    name: str
    """The task function's name, for messages."""
    kind: TaskKind
    function: Callable[..., Any] | None
    """For function tasks: the body. It may be ``async def`` (see :attr:`is_coroutine`)."""
    args: tuple[Any, ...]
    """Arguments with every upstream future replaced by its value, or by the ``ref`` this same
    backend reported for it (see :attr:`TaskUpdate.ref`); ``kwargs`` likewise."""
    kwargs: Mapping[str, Any]
    command: tuple[str, ...] | str | None
    """For executable tasks: argv, or the whole string when :attr:`shell` is set."""
    shell: bool
    description: Mapping[str, Any]
    """The merged ``task_description``: backend-specific resources and options."""
    env: Mapping[str, str] | None
    """Extra environment variables for executables (added to the backend's environment)."""
    cwd: str | None
    stdout: Path | None
    """Where to write stdout when ``capture_stdio`` was asked for; the result is then this path."""
    stderr: Path | None
    timeout: float | None
    """Seconds the body may run; the backend stops it and reports ``TaskTimeoutError``."""
    attempt: int
    """1 for the first run, 2 for the first retry, ..."""
    is_coroutine: bool
    """``True`` when :attr:`function` is an ``async def`` function."""
    input_files: tuple[Any, ...]
    """``InputFile`` objects found in the arguments (for backends that stage files)."""
    output_files: tuple[Any, ...]
    """``OutputFile`` objects found in the arguments."""
    prompt: str | None
    """For prompt tasks: the text the body returned, to be answered."""
    service: Readiness | None
    """For service tasks: when the service counts as ready (see :mod:`asyncflow.services`)."""


class TaskSpec(_TaskSpecFields):
    """An immutable description of one task attempt, built by the engine for a backend.

    It is not the user's future and not shared mutable state: a backend reads it and reports
    back through :meth:`ExecutionBackend.report`. Build it with keywords after ``kind``.

    A named tuple rather than a frozen dataclass: the engine builds one per task attempt, and
    a frozen dataclass sets its 19 fields one ``object.__setattr__`` call at a time.
    """

    __slots__ = ()

    def __new__(cls, uid: str, name: str, kind: TaskKind,
                function: Callable[..., Any] | None = None, args: tuple[Any, ...] = (),
                kwargs: Mapping[str, Any] | None = None,
                command: tuple[str, ...] | str | None = None, shell: bool = False,
                description: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None, cwd: str | None = None,
                stdout: Path | None = None, stderr: Path | None = None,
                timeout: float | None = None, attempt: int = 1, is_coroutine: bool = False,
                input_files: tuple[Any, ...] = (), output_files: tuple[Any, ...] = (),
                prompt: str | None = None, service: Readiness | None = None) -> Self:
        # ``kwargs`` and ``description`` default to a new empty dict each
        return _new_tuple(cls, (
            uid, name, kind, function, args, {} if kwargs is None else kwargs, command, shell,
            {} if description is None else description, env, cwd, stdout, stderr, timeout,
            attempt, is_coroutine, input_files, output_files, prompt, service))

    __setattr__ = _frozen
    __delattr__ = _frozen


def _function_spec(uid: str, name: str, function: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: Mapping[str, Any], description: Mapping[str, Any],
                   timeout: float | None, attempt: int, is_coroutine: bool,
                   input_files: tuple[Any, ...], output_files: tuple[Any, ...]) -> TaskSpec:
    """The spec of a function task, in the fields' order: the engine builds one per call, and
    ``TaskSpec()``'s keywords and defaults cost more than the rest of it."""
    return _new_tuple(TaskSpec, (
        uid, name, TaskKind.FUNCTION, function, args, kwargs, None, False, description, None,
        None, None, None, timeout, attempt, is_coroutine, input_files, output_files, None,
        None))


class TaskUpdate(NamedTuple):
    """A backend's report about one task; build it with the class methods.

    Immutable. A named tuple rather than a frozen dataclass: backends build two per task, and
    a tuple is built in a third of the time.
    """

    uid: str
    state: TaskState
    value: Any = None
    error: BaseException | None = None
    ref: Any = None
    """Optional, with ``DONE``: the backend's own handle on the value where it lives (e.g. a
    Dask future). Opaque to the engine, which keeps it as long as the task's future lives and
    passes it, instead of the value, to later tasks that run on the same backend."""

    def __setattr__(self, name: str, value: Any) -> None:
        _frozen(self, name)

    def __delattr__(self, name: str) -> None:
        _frozen(self, name)

    @classmethod
    def running(cls, uid: str) -> TaskUpdate:
        return _new_tuple(cls, (uid, TaskState.RUNNING, None, None, None))

    @classmethod
    def done(cls, uid: str, value: Any = None, ref: Any = None) -> TaskUpdate:
        return _new_tuple(cls, (uid, TaskState.DONE, value, None, ref))

    @classmethod
    def failed(cls, uid: str, error: BaseException) -> TaskUpdate:
        if not isinstance(error, Exception):  # SystemExit, KeyboardInterrupt: not the program's
            error = TaskExitError(uid, error)
        return _new_tuple(cls, (uid, TaskState.FAILED, None, error, None))

    @classmethod
    def cancelled(cls, uid: str) -> TaskUpdate:
        return _new_tuple(cls, (uid, TaskState.CANCELLED, None, None, None))

    @classmethod
    def canceled(cls, uid: str) -> TaskUpdate:
        """:meth:`cancelled` in RADICAL-Pilot's spelling, kept for backends written with it;
        ``cancelled`` is the one spelling of the state, its update and the docs."""
        return _new_tuple(cls, (uid, TaskState.CANCELLED, None, None, None))


Sink = Callable[[TaskUpdate], None]


class ExecutionBackend(ABC):
    """Base class of every execution backend; subclass it and register the class with the
    ``asyncflow_register_backends`` hook.

    Subclasses declare :attr:`name` and :attr:`capabilities`, take their options as
    keyword-only ``__init__`` parameters (call ``super().__init__()``), and implement
    :meth:`start`, :meth:`submit`, :meth:`cancel` and :meth:`shutdown`.
    """

    name: ClassVar[str]
    """Lower snake case; equal to the entry-point name of the plugin that provides it. An
    instance built with ``name=`` routes under that name instead."""
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the subclass's ``__init__`` RADICAL AsyncFlow's two construction forms.

        ``Backend({"n_workers": 2}, name="cpu")`` is ``Backend(n_workers=2)`` routed as
        ``"cpu"``: a mapping as the first positional argument holds keyword options, and
        ``name=`` (unless the constructor has a ``name`` parameter of its own) sets this
        instance's routing name, so two backends of one class can serve one engine. An option
        the constructor does not take, from the mapping or as a keyword, raises
        :class:`~asyncflow.BackendOptionError` naming the backend and the options it accepts.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, _FORMS, False):  # not already wrapped
            cls.__init__ = _upstream_forms(init)  # type: ignore[method-assign]

    def __init__(self) -> None:
        self.work_dir: Path | None = None
        """Set by the engine: a per-run folder for files the backend writes (captured stdio)."""
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._opening: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    # -- what subclasses implement ---------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Acquire resources. Called once, on the engine's event loop, before any submit."""

    @abstractmethod
    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        """Accept a batch of ready tasks and return promptly; report their fates later (or
        already inside this call).

        The engine calls it at most once per loop iteration and never while a previous call
        has not returned: tasks released meanwhile form the next batch. Raising here fails
        every task of the batch with that exception; nothing else breaks.
        """

    @abstractmethod
    async def cancel(self, uid: str) -> bool:
        """Stop the task ``uid`` if possible and report ``CANCELLED`` for it.

        Return ``True`` if the task will not run to completion, ``False`` if it is unknown,
        already finished, or cannot be interrupted.

        A service task that is ready (reported ``DONE``) is not finished: with the
        ``services`` capability, this stops it, reports nothing more, and returns ``True``
        once it has stopped (the engine's ``stop_service`` calls it so).
        """

    @abstractmethod
    async def shutdown(self) -> None:
        """Release every resource; tasks still in flight are cancelled. Called once."""

    # -- the way back ----------------------------------------------------------------------

    def report(self, update: TaskUpdate) -> None:
        """Tell the engine about a task. Safe to call from any thread."""
        sink = self._sink
        if sink is None:
            raise RuntimeError(f"{type(self).__name__}.report() called before the backend was "
                               "attached to an engine")
        if threading.get_ident() == self._loop_thread:
            sink(update)
        else:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(sink, update)
            except RuntimeError:
                if not self._loop.is_closed():
                    raise
                # A worker that finished after its engine's loop ended: nobody is left to tell.

    def attach(self, sink: Sink, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Route reports to ``sink`` on ``loop`` (the running loop by default).

        The engine calls this; tests and tools that drive a backend directly may too.
        """
        self._sink = sink
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = _loop_thread_id(self._loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop reports are delivered on."""
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to an event loop")
        return self._loop

    # -- life cycle, idempotent ------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._opening is not None and self._opening.done() and not self._closing

    @property
    def closed(self) -> bool:
        return self._closing is not None

    async def open(self) -> Self:
        """Start the backend once; later and concurrent calls wait for the same start."""
        if self._closing is not None:
            raise RuntimeError(f"{type(self).__name__} has been shut down")
        if self._opening is None:
            if self._sink is None:
                self.attach(_unattached_sink)
            self._opening = asyncio.ensure_future(self.start())
        await asyncio.shield(self._opening)
        return self

    async def close(self) -> None:
        """Shut the backend down once; later and concurrent calls wait for the same shutdown."""
        if self._closing is None:
            if self._opening is None:  # never started: nothing to release
                self._closing = asyncio.get_running_loop().create_future()
                self._closing.set_result(None)
            else:
                self._closing = asyncio.ensure_future(self._close_after_start())
        await asyncio.shield(self._closing)

    async def _close_after_start(self) -> None:
        assert self._opening is not None
        with contextlib.suppress(BaseException):  # a failed start still gets its shutdown
            await self._opening
        await self.shutdown()

    def __await__(self) -> Generator[Any, None, Self]:
        return self.open().__await__()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "started" if self.started else "new"
        return f"<{type(self).__name__} name={self.name!r} {state}>"


def _upstream_forms(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` taking a leading mapping of options and ``name=``; see ``__init_subclass__``."""
    params = inspect.signature(init).parameters
    accepted = [p.name for p in params.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    own_name = "name" in params
    listing = accepted if own_name else [*accepted, "name"]  # what an error says it accepts

    @functools.wraps(init)
    def __init__(self: ExecutionBackend, *args: Any, **options: Any) -> None:  # noqa: N807
        name = None if own_name else options.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{type(self).__qualname__}: name= is the routing name, a "
                            f"non-empty string, not {name!r}")
        if args and isinstance(args[0], Mapping):  # upstream's resources dict
            given, *rest = args
            twice = sorted(given.keys() & options.keys())
            if twice:
                raise BackendOptionError(f"{type(self).__qualname__}: {twice} given both in "
                                         "the options dict and as keywords")
            args, options = tuple(rest), {**given, **options}
        unknown = [key for key in options if key not in accepted]
        if unknown and not takes_any:
            raise BackendOptionError(_unknown_options(type(self), unknown, listing))
        init(self, *args, **options)
        if name is not None:
            # The instance's own routing name shadows the class's registered one.
            object.__setattr__(self, "name", name)

    setattr(__init__, _FORMS, True)
    return __init__


_FORMS = "_takes_upstream_forms"  # marks an __init__ wrapped by _upstream_forms


def _unknown_options(cls: type, unknown: list[str], accepted: list[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, accepted, n=1)
        parts.append(repr(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    noun = "option" if len(unknown) == 1 else "options"
    return (f"backend {getattr(cls, 'name', '?')!r} ({cls.__qualname__}) does not accept the "
            f"{noun} {', '.join(parts)}; it accepts: {', '.join(accepted)}")


def _loop_thread_id(loop: asyncio.AbstractEventLoop) -> int | None:
    # The loop runs in the calling thread when it is the running loop; a loop handed over
    # from elsewhere records its thread on first use (asyncio keeps it private, hence getattr).
    try:
        if asyncio.get_running_loop() is loop:
            return threading.get_ident()
    except RuntimeError:
        pass
    return getattr(loop, "_thread_id", None)


def _unattached_sink(update: TaskUpdate) -> None:
    raise RuntimeError(f"report for {update.uid} with no engine attached")
