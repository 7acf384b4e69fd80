"""The peers, run with the interpreter of their own environment (``--peer-python``).

- ``radical-local`` / ``radical-noop``: upstream radical.asyncflow 0.6.0 with its
  ``LocalExecutionBackend(ThreadPoolExecutor(8))`` (async bodies only, each run with
  ``asyncio.run`` in a pool thread) or its ``NoopExecutionBackend`` (executes nothing).
- ``parsl-threads``: Parsl's ``ThreadPoolExecutor(max_threads=8)`` and ``python_app``, logging
  off (its default DEBUG log costs 2-6x, see shared/reference/perf.md).
- ``dask-threads``: an in-process ``LocalCluster`` (1 worker x 8 threads), ``client.submit``.

Parsl and Dask have no blocks: a block is an asyncio task awaiting the peer's futures, as in
the asyncio floor.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine import EngineApi
from floors import THREADS


def _asyncio_block(body: Callable[..., Awaitable[Any]]) -> Callable[..., asyncio.Task[Any]]:
    loop = asyncio.get_running_loop()

    def call(*args: Any) -> asyncio.Task[Any]:
        return loop.create_task(body(*args))

    return call


def _awaitable(handle: Any) -> Any:
    return asyncio.wrap_future(handle) if isinstance(handle, Future) else handle


class RadicalApi(EngineApi):
    """radical.asyncflow has this engine's programming model, so the same adapter serves."""

    def __init__(self, flow: Any) -> None:
        super().__init__(flow, mode="async")  # upstream refuses plain def bodies


async def open_radical_local() -> RadicalApi:
    from radical.asyncflow import LocalExecutionBackend, WorkflowEngine

    backend = await LocalExecutionBackend(ThreadPoolExecutor(THREADS))
    return RadicalApi(await WorkflowEngine.create(backend=backend))


async def open_radical_noop() -> RadicalApi:
    from radical.asyncflow import NoopExecutionBackend, WorkflowEngine

    return RadicalApi(await WorkflowEngine.create(backend=NoopExecutionBackend()))


class ParslApi:
    mode = "sync"

    def __init__(self) -> None:
        import parsl
        from parsl.config import Config
        from parsl.executors.threads import ThreadPoolExecutor as ParslThreads

        self.parsl = parsl
        self.dfk = parsl.load(Config(
            executors=[ParslThreads(max_threads=THREADS, label="threads")],
            run_dir=tempfile.mkdtemp(prefix="asyncflow-bench-parsl-"),
            initialize_logging=False, usage_tracking=0))

    def task(self, body: Callable[..., Any]) -> Callable[..., Any]:
        return self.parsl.python_app(body, executors=["threads"])  # type: ignore[no-any-return]

    def block(self, body: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        return _asyncio_block(body)

    async def gather(self, handles: list[Any]) -> list[Any]:
        return await asyncio.gather(*map(_awaitable, handles))

    async def close(self) -> None:
        self.dfk.cleanup()
        self.parsl.clear()


async def open_parsl() -> ParslApi:
    return ParslApi()


class DaskApi:
    mode = "sync"

    def __init__(self, cluster: Any, client: Any) -> None:
        self.cluster = cluster
        self.client = client

    def task(self, body: Callable[..., Any]) -> Callable[..., Any]:
        submit = self.client.submit

        def call(*args: Any) -> Any:
            return submit(body, *args, pure=False)

        return call

    def block(self, body: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        return _asyncio_block(body)

    async def gather(self, handles: list[Any]) -> list[Any]:
        return await asyncio.gather(*handles)

    async def close(self) -> None:
        await self.client.close()
        await self.cluster.close()


async def open_dask() -> DaskApi:
    from dask.distributed import Client, LocalCluster

    cluster = await LocalCluster(processes=False, n_workers=1, threads_per_worker=THREADS,
                                 dashboard_address=None, asynchronous=True)
    client = await Client(cluster, asynchronous=True)
    return DaskApi(cluster, client)
