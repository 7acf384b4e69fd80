"""A task's future (what users hold) and its record (what the engine tracks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from asyncflow.backend import TaskState
from asyncflow.errors import ExecutableFailedError
from asyncflow.executables import CommandOutput

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine
    from asyncflow.backend import ExecutionBackend, TaskSpec
    from asyncflow.retries import RetryPolicy

T = TypeVar("T")

FUNCTION, EXECUTABLE, PROMPT, BLOCK = "function", "executable", "prompt", "block"

_PENDING, _RUNNING = TaskState.PENDING, TaskState.RUNNING
_ENDS = {TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED}
NEXT_STATES: dict[TaskState, frozenset[TaskState]] = {
    # The lifecycle asyncflow_task_state_changed documents. PENDING -> PENDING and RUNNING ->
    # PENDING are retries (of an attempt that failed before or after it was seen running).
    _PENDING: frozenset({_PENDING, _RUNNING, *_ENDS}),
    _RUNNING: frozenset({_PENDING, *_ENDS}),
    **{end: frozenset() for end in _ENDS},  # final
}


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Decorator options, fixed when the task is defined."""

    backend: str | None = None
    timeout: float | None = None
    capture_stdio: bool = False
    is_coroutine: bool = False
    description: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    """How failed attempts are retried; ``None`` when ``retries`` is 0."""
    cache_key: Callable[..., str] | str | None = None
    """With ``resume=True``: what identifies a call instead of its arguments."""
    service: bool = False
    """A service task: resolved when ready, running until shutdown (:mod:`asyncflow.services`)."""


@final
class TaskFuture(asyncio.Future[T], Generic[T]):
    """The future a task or block call returns at once.

    Await it for the result. ``uid``, ``name``, ``state`` (``PENDING``, ``RUNNING``,
    ``DONE``, ``FAILED``, ``CANCELLED``) and ``workflow_id`` (the workflow scope it was
    called in, or ``None``) describe the task. ``cancel()`` stops a pending task
    at once, asks the backend to stop a running one, and cancels a block's body and members.
    """

    # Slots, not a __dict__: one future per task, set up on every call. TaskRecord sets them.
    __slots__ = ("_cache_key", "_record", "_ref", "name", "state", "uid", "workflow_id")
    # The record is dropped when the task finishes, so finished futures hold no engine state.
    _record: TaskRecord | None
    # What identifies its result across runs, when the engine resumes a run (see journal.py).
    _cache_key: str | None
    # (backend, ref) when the backend keeps the result near its workers (TaskUpdate.ref).
    _ref: tuple[ExecutionBackend | None, Any] | None
    uid: str
    name: str
    state: TaskState
    workflow_id: str | None

    def cancel(self, msg: Any | None = None) -> bool:
        record = self._record
        if record is None or self.done():
            return super().cancel(msg)
        return record.engine._cancel(record, msg)

    def __repr__(self) -> str:
        return f"<TaskFuture {self.uid} {self.name!r} {self.state}>"

    # -- how a finished executable ran (None until then, and for other tasks) ----------------

    @property
    def stdout(self) -> str | None:
        """A finished executable's stdout (its file's path with ``capture_stdio``)."""
        return getattr(self._outcome(), "stdout", None)

    @property
    def stderr(self) -> str | None:
        """A finished executable's stderr (its file's path with ``capture_stdio``, on success)."""
        return getattr(self._outcome(), "stderr", None)

    @property
    def exit_code(self) -> int | None:
        """A finished executable's exit code."""
        return getattr(self._outcome(), "exit_code", None)

    @property
    def task(self) -> Mapping[str, Any]:
        """The finished task as RADICAL AsyncFlow's task record showed it: ``uid``, ``name``,
        ``state``, ``stdout``, ``stderr``, ``exit_code``, ``return_value``, ``exception``.

        A read-only snapshot; results are ``None`` while the task has not finished.
        """
        done = self.done() and not self.cancelled()
        error = self.exception() if done else None
        return MappingProxyType({
            "uid": self.uid, "name": self.name, "state": str(self.state),
            "stdout": self.stdout, "stderr": self.stderr, "exit_code": self.exit_code,
            "return_value": self.result() if done and error is None else None,
            "exception": error,
        })

    def _outcome(self) -> object:
        # The value or error that carries stdout, stderr and exit_code (CommandOutput,
        # ExecutableFailedError), once the task finished.
        if not self.done() or self.cancelled():
            return None
        outcome = self.exception() or self.result()
        return outcome if isinstance(outcome, CommandOutput | ExecutableFailedError) else None


class TaskRecord:
    """The engine's bookkeeping for one task or block, alive until it finishes.

    Observer hooks receive it: ``uid``, ``name``, ``kind``, ``state``, ``attempt``,
    ``backend`` (its name), ``block`` (the uid of the enclosing block, if any),
    ``workflow_id`` (the workflow scope it was called in: a ``workflow_scope()``, the
    enclosing block's uid, a call's ``workflow_id=``, or ``None``), ``error``
    (why the last attempt failed, once it did), ``resumed`` (``True`` when its result came
    from an earlier run's journal).
    """

    __slots__ = (
        "args", "attempt", "backend", "backend_instance", "block", "body", "cache_key",
        "command", "dependents", "engine", "error", "fn", "future", "has_futures", "kind",
        "kwargs", "members", "name", "options", "resumed", "spec", "state", "uid", "waiting",
        "workflow_id",
    )

    def __init__(self, engine: WorkflowEngine, uid: str, name: str, kind: str,
                 fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: TaskOptions, block: TaskRecord | None,
                 workflow_id: str | None = None) -> None:
        self.engine = engine
        self.uid = uid
        self.name = name
        self.kind = kind
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.block = block.uid if block is not None else None
        self.workflow_id = workflow_id
        self.state = TaskState.PENDING
        self.attempt = 1
        self.waiting = 0  # dependencies not finished yet
        self.has_futures = False
        # Records of this engine waiting on this one; most tasks have none, so made on demand.
        self.dependents: list[TaskRecord] | None = None
        self.members: set[TaskFuture[Any]] | None = set() if kind == BLOCK else None
        self.body: asyncio.Task[Any] | None = None  # a block's body, an executable's command
        self.backend_instance: ExecutionBackend | None = None  # what runs it, once released
        self.backend: str | None = None  # that backend's routing name
        self.spec: TaskSpec | None = None  # built when released to its backend's batch
        # What an executable's or a prompt's body returned: its command line, or its prompt.
        self.command: str | None = None
        self.error: BaseException | None = None  # why the last attempt failed
        self.cache_key: str | None = None  # set on release when the engine resumes a run
        self.resumed = False
        self.future: TaskFuture[Any] = TaskFuture(loop=engine.loop)
        future = self.future
        future._record = self
        future.uid = uid
        future.name = name
        future.state = TaskState.PENDING
        future.workflow_id = workflow_id
        future._cache_key = future._ref = None

    def __repr__(self) -> str:
        return f"<TaskRecord {self.uid} {self.name!r} {self.state} attempt={self.attempt}>"
