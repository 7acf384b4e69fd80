"""SIGINT and SIGTERM during a run: shut every engine down cleanly, then let the signal act.

Handlers are installed only on the main thread's event loop (elsewhere Python cannot receive
signals), once for all engines of the process, and the previous handlers are restored when
the last engine closes: both kinds, those set with ``signal.signal`` and those the program
(aiohttp, uvicorn) added with ``loop.add_signal_handler``. After the shutdown the signal is
raised again with the previous handler in place, which chains to it: the program's own
handler runs, Ctrl-C still ends in KeyboardInterrupt, SIGTERM still terminates. In a Jupyter
kernel SIGINT is the kernel's: its interrupt cancels what the cell awaits, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_engines: list[WorkflowEngine] = []
_previous: dict[int, Any] = {}
_loop_previous: dict[int, asyncio.Handle] = {}  # the program's loop handlers we replaced
_ours: dict[int, asyncio.Handle] = {}  # our own, to tell whether the program replaced it
_loop: asyncio.AbstractEventLoop | None = None
_pending: int | None = None  # the signal to raise once the engines it stopped are down
_stopping: set[WorkflowEngine] = set()  # the engines that signal is stopping


def install(engine: WorkflowEngine) -> None:
    global _loop
    if threading.current_thread() is not threading.main_thread():
        return
    if _loop is not None and _loop is not engine.loop and not _loop.is_running():
        _forget()  # engines left open on a loop that has ended: their handlers ended with it
    if not _engines:
        _loop = engine.loop
        handlers = _loop_handlers(engine.loop)
        try:
            for sig in SIGNALS:
                _previous[sig] = signal.getsignal(sig)
                if handlers is not None and sig in handlers:
                    _loop_previous[sig] = handlers[sig]
                engine.loop.add_signal_handler(sig, _on_signal, sig)
                if handlers is not None:
                    _ours[sig] = handlers[sig]
        except (NotImplementedError, RuntimeError, ValueError):  # no signals on this loop
            _restore()
            return
    elif engine.loop is not _loop:
        return
    _engines.append(engine)


def _in_kernel() -> bool:
    """Whether this process is a running IPython kernel (Jupyter). The kernel turns an
    interrupt into the cancellation of what the cell awaits; the engines, their backends and
    their tasks outside that cell stay up for the next cell, until ``shutdown()``."""
    kernelapp = sys.modules.get("ipykernel.kernelapp")  # never imported here, only looked up
    return kernelapp is not None and bool(kernelapp.IPKernelApp.initialized())


def uninstall(engine: WorkflowEngine) -> None:
    """Called last in an engine's shutdown; raises a pending signal after the last one."""
    global _pending
    if engine not in _engines:
        return
    _engines.remove(engine)
    _stopping.discard(engine)
    loop = _loop
    if not _engines:
        _restore()
    if _pending is not None and not _stopping and loop is not None:
        sig, _pending = _pending, None
        # From a callback of its own, not from the shutdown task: nothing stores the
        # KeyboardInterrupt, it goes up through the loop to the program.
        loop.call_soon(signal.raise_signal, sig)


def _on_signal(sig: int) -> None:
    global _pending
    if sig == signal.SIGINT and _in_kernel():
        # An interrupt of a Jupyter cell: the kernel's own handler cancels what the cell
        # awaits; ours only woke the loop so that it runs (the kernel's handler does not).
        return
    if _pending is not None:  # a second signal while shutting down: stop waiting
        _forget()
        signal.raise_signal(sig)
        return
    _pending = sig
    error = KeyboardInterrupt() if sig == signal.SIGINT else SystemExit(128 + sig)
    _stopping.update(_engines)
    for engine in list(_engines):
        # Each engine's shutdown task outlives a cancellation by asyncio.run(): once the
        # last one is down, uninstall() raises the signal.
        engine._begin_shutdown(error=error)


def _restore() -> None:
    global _loop
    loop = _loop if _loop is not None and not _loop.is_closed() else None
    handlers = _loop_handlers(loop) if loop is not None else None
    for sig, previous in _previous.items():
        if handlers and sig in handlers and handlers[sig] is not _ours.get(sig):
            continue  # the program replaced our handler while the engine ran: it stays
        if loop is not None:
            with contextlib.suppress(NotImplementedError):  # a loop without signal handlers
                loop.remove_signal_handler(sig)
        handle = _loop_previous.get(sig)
        if handle is not None and loop is not None:
            callback, args = handle._callback, handle._args  # type: ignore[attr-defined]
            loop.add_signal_handler(sig, callback, *args)
        elif handle is not None or previous is None:  # its loop is gone: the default
            signal.signal(sig, signal.SIG_DFL)
        else:
            signal.signal(sig, previous)
    _previous.clear()
    _loop_previous.clear()
    _ours.clear()
    _loop = None


def _loop_handlers(loop: asyncio.AbstractEventLoop) -> dict[int, asyncio.Handle] | None:
    # asyncio has no public way to read the handlers a loop runs for signals: its Unix loops
    # keep them in this dict (signal number -> Handle). None for a loop that does not.
    handlers = getattr(loop, "_signal_handlers", None)
    return handlers if isinstance(handlers, dict) else None


def _forget() -> None:
    """Drop every engine and put the previous handlers back."""
    global _pending
    _restore()
    _engines.clear()
    _stopping.clear()
    _pending = None


_mask_before_fork: set[int] | None = None  # the forking thread's mask, while a fork is on


def _block_before_fork() -> None:
    # A signal can reach a new child before its after-fork hook has run, while it still has
    # our handlers and the loop's wakeup fd: a SIGTERM sent to it then would be written into
    # the parent's loop. So the forking thread blocks these signals across the fork; the
    # child handles what came meanwhile once its handlers are the previous ones again.
    global _mask_before_fork
    if _previous:
        _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def _unblock_in_parent() -> None:
    global _mask_before_fork
    if _mask_before_fork is not None:
        mask, _mask_before_fork = _mask_before_fork, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _forget_in_child() -> None:
    # A forked child (a fork-context process-pool worker, os.fork() in a task body) inherits
    # these handlers and the loop's wakeup fd: a SIGTERM sent to it would be written into the
    # parent's loop, shutting the parent's engines down, and would never end the child.
    # The child gets back the handlers the process had before any engine started.
    global _loop, _mask_before_fork
    if _previous:
        signal.set_wakeup_fd(-1)
        for sig, previous in _previous.items():
            # A loop's own handler would only write to the parent's loop: the default.
            default = previous is None or sig in _loop_previous
            signal.signal(sig, signal.SIG_DFL if default else previous)
        _previous.clear()
        _loop_previous.clear()
        _ours.clear()
        _loop = None
        _forget()
    if _mask_before_fork is not None:
        mask, _mask_before_fork = _mask_before_fork, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_block_before_fork, after_in_parent=_unblock_in_parent,
                        after_in_child=_forget_in_child)
