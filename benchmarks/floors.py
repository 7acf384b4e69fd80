"""The floors: the same shapes on raw asyncio, with no engine around the bodies.

``asyncio``: one ``create_task`` per call; a task awaits its dependencies, then its body, on
the loop. Nothing can schedule these graphs with less work, so it is the limit every on-loop
system is measured against.

``asyncio-threads``: the same, but the (sync) body runs through ``loop.run_in_executor`` in a
``ThreadPoolExecutor``: the floor for any system that runs bodies in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

THREADS = 8


async def _resolved(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple([await a if isinstance(a, asyncio.Future) else a for a in args])


class AsyncioApi:
    """Raw asyncio: async bodies on the loop (``threads=False``) or sync bodies in a pool."""

    def __init__(self, threads: bool) -> None:
        self.mode = "sync" if threads else "async"
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPoolExecutor(THREADS) if threads else None

    def task(self, body: Callable[..., Any]) -> Callable[..., asyncio.Task[Any]]:
        loop, pool = self.loop, self.pool
        if pool is None:
            async def run(args: tuple[Any, ...]) -> Any:
                return await body(*await _resolved(args))
        else:
            async def run(args: tuple[Any, ...]) -> Any:
                return await loop.run_in_executor(pool, body, *await _resolved(args))

        def call(*args: Any) -> asyncio.Task[Any]:
            return loop.create_task(run(args))

        return call

    def block(self, body: Callable[..., Awaitable[Any]]) -> Callable[..., asyncio.Task[Any]]:
        loop = self.loop

        async def run(args: tuple[Any, ...]) -> Any:
            return await body(*await _resolved(args))

        def call(*args: Any) -> asyncio.Task[Any]:
            return loop.create_task(run(args))

        return call

    async def gather(self, handles: list[Any]) -> list[Any]:
        return await asyncio.gather(*handles)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


async def open_asyncio() -> AsyncioApi:
    return AsyncioApi(threads=False)


async def open_asyncio_threads() -> AsyncioApi:
    return AsyncioApi(threads=True)
