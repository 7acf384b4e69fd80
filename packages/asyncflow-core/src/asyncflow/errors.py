"""Every exception AsyncFlow raises on purpose; each message names the task, key or file at
fault."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AsyncFlowError",
    "BackendConflictError",
    "BackendError",
    "BackendOptionError",
    "CapabilityError",
    "ConfigError",
    "DependencyFailureError",
    "EngineClosedError",
    "EngineInternalError",
    "ExecutableFailedError",
    "PluginLoadError",
    "RemoteError",
    "RemoteTraceback",
    "RunInUseError",
    "ServiceExitedError",
    "ServiceNotReadyError",
    "TaskExitError",
    "TaskTimeoutError",
    "UnknownBackendError",
    "WorkerLostError",
]


class AsyncFlowError(Exception):
    """Base class of AsyncFlow's own errors."""


class DependencyFailureError(AsyncFlowError):
    """A task was not run because a task it depends on failed.

    ``failed_dependencies`` names the direct dependencies that failed, ``root_task`` the task
    that originally failed, and ``root_cause`` (also ``__cause__``) is that task's exception.
    """

    def __init__(
        self,
        message: str,
        failed_dependencies: Sequence[str] = (),
        root_cause: BaseException | None = None,
        root_task: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failed_dependencies = list(failed_dependencies)
        self.root_cause = root_cause
        self.root_task = root_task
        self.__cause__ = root_cause

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.failed_dependencies, self.root_cause,
                             self.root_task))


class ExecutableFailedError(AsyncFlowError, RuntimeError):
    """An executable task exited with a non-zero code.

    A ``RuntimeError`` too, which is what RADICAL AsyncFlow raised, so ``except RuntimeError``
    in a ported script still catches it.
    """

    def __init__(self, task: str, command: object, exit_code: int, stderr: str = "",
                 stdout: str = "") -> None:
        self.task = task
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout
        tail = stderr_tail(stderr)
        detail = f"\nstderr (last lines):\n{tail}" if tail else " (stderr was empty)"
        super().__init__(f"task {task!r}: command {command!r} exited with code {exit_code}"
                         f"{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task, self.command, self.exit_code, self.stderr, self.stdout))


class TaskTimeoutError(AsyncFlowError, TimeoutError):
    """A task ran longer than its ``timeout=`` and was stopped."""

    def __init__(self, task: str, timeout: float, note: str = "") -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task!r} exceeded its timeout of {timeout:g} s{note}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task, self.timeout))


class ServiceExitedError(AsyncFlowError):
    """A service task's process ended on its own: before it was ready (the task's future
    fails with this), or afterwards (logged and passed to the ``asyncflow_service_exited``
    hook). ``output`` is the tail of what it printed (stdout and stderr)."""

    def __init__(self, task: str, exit_code: int | None, output: str = "",
                 ready: bool = False) -> None:
        self.task = task
        self.exit_code = exit_code
        self.output = output
        self.ready = ready
        when = "after it was ready" if ready else "before it was ready"
        tail = stderr_tail(output)
        detail = f"\noutput (last lines):\n{tail}" if tail else " (it printed nothing)"
        super().__init__(f"service {task!r} exited with code {exit_code} {when}{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task, self.exit_code, self.output, self.ready))


class ServiceNotReadyError(AsyncFlowError, TimeoutError):
    """A service task did not become ready within its ``ready_timeout``; it was stopped."""

    def __init__(self, task: str, timeout: float, condition: str, output: str = "") -> None:
        self.task = task
        self.timeout = timeout
        self.condition = condition
        self.output = output
        tail = stderr_tail(output)
        detail = f"\noutput (last lines):\n{tail}" if tail else " (it printed nothing)"
        super().__init__(f"service {task!r} was not ready ({condition}) within {timeout:g} s"
                         f" and was stopped{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task, self.timeout, self.condition, self.output))


class TaskExitError(AsyncFlowError):
    """A task's body raised ``SystemExit`` or ``KeyboardInterrupt`` (kept as ``error`` and as
    ``__cause__``). Either would end the program if the task's future raised it, so the task
    fails with this error instead and the other tasks go on."""

    def __init__(self, task: str, error: BaseException) -> None:
        self.task = task
        self.error = error
        super().__init__(f"{task}: the task's body raised {type(error).__name__}"
                         f"{f'({error})' if str(error) else ''}; the task failed, the program "
                         "goes on")
        self.__cause__ = error

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task, self.error))


class RemoteError(AsyncFlowError):
    """Stands in for an exception raised in another process that cannot be rebuilt here (its
    class cannot be pickled or imported): ``type_name`` and ``message`` say what it was, and
    its ``__cause__`` is the :class:`RemoteTraceback` of where it was raised."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}" if message else type_name)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message))


class WorkerLostError(AsyncFlowError):
    """The process or machine running a task died before the task finished."""


class RemoteTraceback(Exception):  # noqa: N818 - a traceback shown as a cause, not an error
    """The traceback of an exception raised in another process (a pool worker, a RAPTOR
    worker), as text. Backends set it as the ``__cause__`` of the exception a task raised
    there, so the traceback printed here shows where the body failed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class RunInUseError(AsyncFlowError, RuntimeError):
    """Another process holds the run's journal: two processes cannot run or resume one run
    at once. The message names the run and the process holding it."""


class EngineClosedError(AsyncFlowError, RuntimeError):
    """The engine has been shut down and takes no new work."""


class EngineInternalError(AsyncFlowError, RuntimeError):
    """The engine's own code raised while handling a task: a bug in AsyncFlow or in a plugin.

    The task fails with it instead of being left pending; ``__cause__`` is what was raised.
    """


class CapabilityError(AsyncFlowError, TypeError):
    """A task needs something its backend cannot do (e.g. an executable on a function-only
    backend)."""


class BackendError(AsyncFlowError):
    """A backend misbehaved (e.g. its ``submit`` raised); the affected tasks carry it."""


class UnknownBackendError(AsyncFlowError, KeyError):
    """No installed backend has this name, or a task asks for a backend its engine lacks.

    A ``KeyError`` (so a ``LookupError``), which is what RADICAL AsyncFlow documents for a task
    routed to an unknown backend.
    """

    def __str__(self) -> str:
        # KeyError's str() is the repr of its key; this one's argument is a sentence.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class BackendConflictError(AsyncFlowError, RuntimeError):
    """Two plugins claim the same backend name."""


class PluginLoadError(AsyncFlowError, ImportError):
    """A plugin's entry point could not be imported."""


class ConfigError(AsyncFlowError, ValueError):
    """A configuration file, variable or argument is invalid."""


class BackendOptionError(ConfigError, TypeError):
    """A backend was given an option its constructor does not take, or a value of the wrong
    type. A ``TypeError`` (as Python raises for an unknown keyword) and a ``ConfigError``."""


def stderr_tail(text: str, lines: int = 20, chars: int = 2000) -> str:
    """The last ``lines`` lines of ``text`` (at most ``chars`` characters), for messages."""
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return tail[-chars:]
