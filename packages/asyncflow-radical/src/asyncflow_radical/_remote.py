"""Function tasks across the wire: packed here, called in a RAPTOR worker, unpacked here.

RAPTOR serializes a function with dill and its return value with msgpack, and reports an
exception only as its ``repr``. So the backend sends one plain string instead: the user's
function and arguments pickled with cloudpickle (functions from ``__main__`` and closures by
value, module functions by reference), and :func:`call` sends back another: the value, the
exception itself with the worker's traceback, or word that the task was cancelled. Tuples
stay tuples, exceptions keep their type.

Cancelling: the worker (``_worker.py``) calls :func:`request_cancel`, which leaves a marker
file for the task and signals the task's process if it runs; :func:`call` stops at either.
The marker covers a task cancelled before its process started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import signal
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cloudpickle

from asyncflow.backend import TaskSpec
from asyncflow.errors import BackendError, RemoteTraceback

__all__ = ["Cancelled", "RemoteTraceback", "call", "pack", "request_cancel", "unpack"]

_OK, _RAISED, _CANCELLED = "ok", "raised", "cancelled"
_SIGNAL = signal.SIGUSR1


class Cancelled(BaseException):
    """The task was cancelled on the worker, as asked."""


# -- on the client ---------------------------------------------------------------------------

def pack(function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The call as text that survives RADICAL-Pilot's own serializers."""
    return _encode((function, args, dict(kwargs)))


def unpack(result: str, spec: TaskSpec) -> Any:
    """The value :func:`call` packed; raise the exception it packed, or :class:`Cancelled`."""
    try:
        kind, *rest = _decode(result)
    except Exception as exc:
        raise BackendError(f"task {spec.name!r} ({spec.uid}): its outcome cannot be unpickled "
                           f"here: {type(exc).__name__}: {exc}") from exc
    if kind == _OK:
        return rest[0]
    if kind == _CANCELLED:
        raise Cancelled
    error, text = rest
    error.__cause__ = RemoteTraceback(text)
    raise error


# -- in the RAPTOR worker ----------------------------------------------------------------------

async def call(payload: str) -> str:
    """Run a packed call in the worker and pack its outcome.

    RAPTOR forks a process for each task and runs this there inside ``asyncio.run``, so an
    ``async def`` body gets a loop and a plain ``def`` body may block.
    """
    try:
        function, args, kwargs = _decode(payload)
    except Exception as exc:  # mostly: the function's module is not importable here
        failure = ImportError(f"the RAPTOR worker cannot load the task's function: "
                              f"{type(exc).__name__}: {exc}. A function defined in a module "
                              "travels by reference: that module must be importable on the "
                              f"pilot (worker PYTHONPATH={os.environ.get('PYTHONPATH', '')!r})")
        return _encode_error(failure)
    try:
        with _interruptible(os.environ.get("RP_TASK_ID", "")):
            value = function(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await _await_interruptible(value)
    except Cancelled:
        return _encode((_CANCELLED,))
    except BaseException as exc:  # SystemExit too: it ends the task, not the worker
        return _encode_error(exc)
    try:
        return _encode((_OK, value))
    except Exception as exc:  # a value that cannot travel is the task's failure, said plainly
        error = TypeError(f"the return value {type(value).__name__} cannot be pickled: {exc}")
        return _encode_error(error)


def request_cancel(uid: str) -> None:
    """Stop the function task ``uid``: now if it runs, at its start if it has not started."""
    markers = _markers()
    if markers is None:
        return
    (markers / f"{uid}.cancel").touch()
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((markers / f"{uid}.pid").read_text()), _SIGNAL)


def _raise_cancelled(signum: int, frame: Any) -> None:
    raise Cancelled


@contextlib.contextmanager
def _interruptible(uid: str) -> Iterator[None]:
    """While inside, the signal of :func:`request_cancel` raises :class:`Cancelled`."""
    markers = _markers()
    if markers is None or not uid:
        yield
        return
    signal.signal(_SIGNAL, _raise_cancelled)
    pid_file, cancel_file = markers / f"{uid}.pid", markers / f"{uid}.cancel"
    pid_file.write_text(str(os.getpid()))
    try:
        if cancel_file.exists():  # after the pid file: no cancel request is missed
            raise Cancelled
        yield
    finally:
        signal.signal(_SIGNAL, signal.SIG_IGN)  # a late signal must not kill the process
        pid_file.unlink(missing_ok=True)
        cancel_file.unlink(missing_ok=True)


async def _await_interruptible(awaitable: Awaitable[Any]) -> Any:
    # A signal handler raising inside the event loop would break out of asyncio.run(); the
    # loop's own signal handling cancels the coroutine instead.
    task = asyncio.ensure_future(awaitable)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(_SIGNAL, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled():
            raise Cancelled from None
        raise
    finally:
        loop.remove_signal_handler(_SIGNAL)
        signal.signal(_SIGNAL, _raise_cancelled)


def _markers() -> Path | None:
    sandbox = os.environ.get("RP_PILOT_SANDBOX")
    if not sandbox:
        return None
    folder = Path(sandbox, ".asyncflow-tasks")
    folder.mkdir(exist_ok=True)
    return folder


def _encode_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    try:
        return _encode((_RAISED, exc, text))
    except Exception:  # an exception that cannot be pickled still arrives, as text
        return _encode((_RAISED, RuntimeError(f"{type(exc).__name__}: {exc}"), text))


def _encode(obj: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode("ascii")


def _decode(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text))
