"""What a process-pool worker runs for each task. Imported in the workers: keep it light.

A worker process keeps one event loop for its whole life, so ``async def`` bodies never pay
for a new loop per task. Before each body it announces ``<ticket> <pid>`` on a local socket of
the backend, which learns that the task is RUNNING and which process to kill to stop it.
Outcomes travel back cloudpickled, so exception classes and values defined in closures or in
``__main__`` survive the trip; an exception's traceback text travels with it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import traceback
from multiprocessing import util
from typing import Any

import cloudpickle

from asyncflow.errors import RemoteError, RemoteTraceback
from asyncflow_concurrent._loops import close_loop

__all__ = ["RemoteTraceback", "run", "unpack"]

_loop: asyncio.AbstractEventLoop | None = None
_channels: dict[str, socket.socket] = {}
_pid = 0  # the process that owns _loop and _channels (a fork copies them)


def run(payload: bytes, address: str, token: bytes, ticket: int) -> bytes:
    """Run one body in this worker; returns the cloudpickled outcome (see :func:`unpack`)."""
    _own_state()
    _announce(address, token, ticket)
    try:
        function, args, kwargs, is_coroutine = cloudpickle.loads(payload)
        if is_coroutine:
            value = _event_loop().run_until_complete(function(*args, **kwargs))
        else:
            value = function(*args, **kwargs)
    except BaseException as exc:  # even SystemExit: the task failed, not the worker
        return _pack_error(exc)
    try:
        return bytes(cloudpickle.dumps((True, value)))
    except Exception as exc:
        return _pack_error(TypeError(f"the task's return value ({type(value).__qualname__}) "
                                     f"cannot be sent back from its worker process: {exc}"))


def unpack(data: bytes) -> Any:
    """The value a body returned, or raise its exception with its remote traceback."""
    outcome = cloudpickle.loads(data)
    if outcome[0]:
        return outcome[1]
    _, packed, type_name, message, text = outcome
    try:
        error = cloudpickle.loads(packed)
    except Exception:  # its class is not importable here
        error = RemoteError(type_name, message)
    error.__cause__ = RemoteTraceback(text)
    raise error


def _pack_error(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return bytes(cloudpickle.dumps((False, _pickled(exc, name), name, str(exc), text)))


def _pickled(exc: BaseException, name: str) -> bytes:
    """``exc`` pickled so that it unpickles: as it pickles itself if that comes back, else
    rebuilt from its class, args and attributes without calling its ``__init__`` (whose
    signature an exception's default pickling assumes), else as a :class:`RemoteError`."""
    for candidate in (exc, _Rebuilt(exc)):
        try:
            data = bytes(cloudpickle.dumps(candidate))
            cloudpickle.loads(data)
            return data
        except Exception:
            continue
    return bytes(cloudpickle.dumps(RemoteError(name, str(exc))))


class _Rebuilt:
    """Pickles an exception as its class, args and ``__dict__``; unpickles as the exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        return (_rebuild, (type(exc), exc.args, dict(vars(exc))))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...],
             state: dict[str, Any]) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def _own_state() -> None:
    # A worker forked from another worker would share its socket and loop: start afresh.
    global _loop, _pid
    if _pid != os.getpid():
        _pid = os.getpid()
        _loop = None
        _channels.clear()
        # Ctrl-C in a terminal reaches the whole process group, workers too. What it means is
        # the engine's process's to decide (it stops the workers itself): it must not fail the
        # body a worker runs. A handler, not SIG_IGN, so the commands a body starts get the
        # default back when they exec.
        signal.signal(signal.SIGINT, _leave_interrupt_to_the_engine)


def _leave_interrupt_to_the_engine(sig: int, frame: Any) -> None:
    pass


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        util.Finalize(None, close_loop, args=(_loop,), exitpriority=0)  # at worker exit
    return _loop


def _announce(address: str, token: bytes, ticket: int) -> None:
    channel = _channels.get(address)
    if channel is None:
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.connect(address)
        channel.sendall(token + b"\n")
        _channels[address] = channel
        util.Finalize(None, channel.close, exitpriority=0)
    channel.sendall(b"%d %d\n" % (ticket, os.getpid()))
