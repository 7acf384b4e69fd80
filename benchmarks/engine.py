"""This engine as a benchmark system: ``noop`` (the engine alone), ``concurrent`` on the loop,
``concurrent`` with a ``ThreadPoolExecutor`` (sync bodies, next to the ``run_in_executor``
floor; async bodies, the seed's way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from floors import THREADS


class UnavailableError(RuntimeError):
    """The system cannot run here (a package is not installed); the report says why."""


class EngineApi:
    def __init__(self, flow: Any, mode: str) -> None:
        self.flow = flow
        self.mode = mode

    def task(self, body: Callable[..., Any]) -> Callable[..., Any]:
        return self.flow.function_task(body)  # type: ignore[no-any-return]

    def block(self, body: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        return self.flow.block(body)  # type: ignore[no-any-return]

    async def gather(self, handles: list[Any]) -> list[Any]:
        return await asyncio.gather(*handles)

    async def close(self) -> None:
        await self.flow.shutdown()


def _concurrent_backend(executor: Any = None) -> Any:
    import asyncflow

    try:
        cls = asyncflow.registry().get("concurrent")
    except asyncflow.UnknownBackendError:
        raise UnavailableError("asyncflow-concurrent is not installed") from None
    return cls(executor) if executor is not None else cls()


async def _open(backend: Any, mode: str) -> EngineApi:
    from asyncflow import WorkflowEngine

    return EngineApi(await WorkflowEngine.create(backend=backend), mode)


async def open_noop() -> EngineApi:
    return await _open("noop", "async")


async def open_onloop() -> EngineApi:
    return await _open(_concurrent_backend(), "async")


async def open_threads() -> EngineApi:
    return await _open(_concurrent_backend(ThreadPoolExecutor(THREADS)), "sync")


async def open_threads_async() -> EngineApi:
    return await _open(_concurrent_backend(ThreadPoolExecutor(THREADS)), "async")
