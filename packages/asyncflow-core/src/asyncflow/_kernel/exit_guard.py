"""Engines a program forgot to shut down are closed anyway: when their event loop is torn
down, or at interpreter exit.

Without this, a script that returns or raises before ``shutdown()`` can hang at exit: a
backend's worker threads are joined before ``atexit`` runs (an async body sleeping in thread
mode holds the interpreter for as long as it sleeps), a command still starting holds
``asyncio.run()``'s final cancellation until it ends, and RADICAL-Pilot's or Dask's helper
processes keep the interpreter waiting, or outlive it with their batch jobs.

``asyncio.run()`` ends by cancelling every task of the loop and running the loop until they
have finished. Each engine keeps one task, its guard, that waits for just that: cancelled
while the engine is open, it shuts the engine down (a shutdown that a cancellation does not
cut short) and so holds the loop until the backends are closed. A loop that is never torn
down is left to ``atexit``, which runs the shutdown on it then.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine

__all__ = ["guard", "release"]

log = logging.getLogger("asyncflow.engine")

# The guard of each open engine: a strong reference to the task, dropped at shutdown.
_guards: weakref.WeakKeyDictionary[WorkflowEngine, asyncio.Task[None]] = \
    weakref.WeakKeyDictionary()
_registered = False


def guard(engine: WorkflowEngine) -> None:
    """Close ``engine`` if its loop is torn down, or the interpreter exits, while it is open."""
    global _registered
    _guards[engine] = engine.loop.create_task(_watch(engine), name=f"{engine.uid} exit guard")
    if not _registered:
        atexit.register(_at_exit)
        _registered = True


def release(engine: WorkflowEngine) -> None:
    """The engine is shut down: its guard ends (unless it is the one shutting it down)."""
    task = _guards.pop(engine, None)
    if task is not None:
        task.cancel()


async def _watch(engine: WorkflowEngine) -> None:
    try:
        await asyncio.get_running_loop().create_future()  # never set: only a cancel ends it
    except asyncio.CancelledError:
        if engine.closed or _guards.pop(engine, None) is None:
            return  # released by the shutdown
        _warn(engine)
        await engine.shutdown()


def _at_exit() -> None:
    for engine in list(_guards):
        loop = engine.loop
        if engine.closed or loop.is_closed() or loop.is_running():
            continue  # closed, or nothing can run its shutdown now
        _guards.pop(engine).cancel()
        _warn(engine)
        loop.run_until_complete(engine.shutdown())


def _warn(engine: WorkflowEngine) -> None:
    log.warning("asyncflow: engine %s was not shut down (shutdown() was not called); closing "
                "its backends now", engine.uid)
