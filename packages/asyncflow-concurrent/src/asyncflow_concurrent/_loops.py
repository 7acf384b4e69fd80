"""Event loops that outlive one task: created once per worker thread or process, closed once."""

from __future__ import annotations

import asyncio
import contextlib


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close an idle loop the way ``asyncio.run`` would: cancel what its bodies left running,
    finish async generators and the default executor, then close it.

    Call it from a thread that is not running another event loop.
    """
    if loop.is_closed():
        return
    try:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    except RuntimeError:  # running in some other thread after all: leave it to that thread
        return
    finally:
        with contextlib.suppress(RuntimeError):
            loop.close()
