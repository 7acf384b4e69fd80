"""Function-task bodies defined in a module: they travel to the RAPTOR worker by reference,
so the worker imports this module (the backend puts this folder on its PYTHONPATH)."""

from __future__ import annotations

import asyncio
import os


class UnusualError(Exception):
    """A custom exception type, which must arrive as itself."""


def divide(a: float, b: float) -> tuple[float, float]:
    return a / b, a % b


async def later(value: str) -> str:
    await asyncio.sleep(0.01)
    return value


def worker_pid() -> int:
    return os.getpid()


def refuse(reason: str) -> None:
    raise UnusualError(reason)
