"""SIGINT and SIGTERM during a run: shut every engine down cleanly, then let the signal act.

Handlers are installed only on the main thread's event loop (elsewhere Python cannot receive
signals), once for all engines of the process, and the previous handlers are restored when
the last engine closes. After the shutdown the signal is raised again with the previous
handler in place: Ctrl-C still ends in KeyboardInterrupt, SIGTERM still terminates.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncflow._engine import WorkflowEngine

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_engines: list[WorkflowEngine] = []
_previous: dict[int, Any] = {}
_loop: asyncio.AbstractEventLoop | None = None
_stopping: set[asyncio.Task[None]] = set()  # strong references to the shutdown tasks


def install(engine: WorkflowEngine) -> None:
    global _loop
    if threading.current_thread() is not threading.main_thread():
        return
    if not _engines:
        try:
            for sig in SIGNALS:
                _previous[sig] = signal.getsignal(sig)
                engine.loop.add_signal_handler(sig, _on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals on this loop
            _restore()
            return
        _loop = engine.loop
    elif engine.loop is not _loop:
        return
    _engines.append(engine)


def uninstall(engine: WorkflowEngine) -> None:
    if engine in _engines:
        _engines.remove(engine)
        if not _engines:
            _restore()


def _restore() -> None:
    global _loop
    for sig, previous in _previous.items():
        if _loop is not None and not _loop.is_closed():
            _loop.remove_signal_handler(sig)
        signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    _previous.clear()
    _loop = None


def _forget_in_child() -> None:
    # A forked child (a fork-context process-pool worker, os.fork() in a task body) inherits
    # these handlers and the loop's wakeup fd: a SIGTERM sent to it would be written into the
    # parent's loop, shutting the parent's engines down, and would never end the child.
    # The child gets back the handlers the process had before any engine started.
    global _loop
    if not _previous:
        return
    signal.set_wakeup_fd(-1)
    for sig, previous in _previous.items():
        signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    _previous.clear()
    _engines.clear()
    _stopping.clear()
    _loop = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _on_signal(sig: int) -> None:
    if _stopping:  # a second signal while shutting down: stop waiting
        _restore()
        signal.raise_signal(sig)
        return
    assert _loop is not None
    task = _loop.create_task(_shutdown_then_raise(sig), name=f"asyncflow {signal.Signals(sig).name}")
    _stopping.add(task)
    task.add_done_callback(_stopping.discard)


async def _shutdown_then_raise(sig: int) -> None:
    error = KeyboardInterrupt() if sig == signal.SIGINT else SystemExit(128 + sig)
    engines = list(_engines)
    await asyncio.gather(*(e.shutdown(error=error) for e in engines), return_exceptions=True)
    _restore()
    signal.raise_signal(sig)
