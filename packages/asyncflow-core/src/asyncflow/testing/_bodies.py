"""Task bodies the conformance kit submits.

They live in an importable module, not in the tests, so that backends running tasks in other
processes (a process pool, Dask workers, a pilot) can import them by reference.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any


class ConformanceError(Exception):
    """The exception the kit's failing bodies raise; a custom type survives only if the
    backend keeps exception types."""


def python_command(code: str) -> str:
    """A command line that runs ``code`` in this Python, unbuffered."""
    return shlex.join([sys.executable, "-u", "-c", code])


def add(a: int, b: int) -> int:
    return a + b


async def multiply(a: int, b: int) -> int:
    await asyncio.sleep(0)  # a real suspension point: this body must run on an event loop
    return a * b


def double(i: int) -> int:
    return 2 * i


def echo(value: Any) -> Any:
    return value


def fail_sync(message: str) -> None:
    raise ConformanceError(message)


async def fail_async(message: str) -> None:
    await asyncio.sleep(0)
    raise ConformanceError(message)


def echo_completion(prompt: str, description: Mapping[str, Any]) -> str:
    """A completion function for prompt tasks that needs no model: it names the ``model`` of
    the task's description (``"echo"`` without one) and repeats the prompt."""
    return f"{description.get('model', 'echo')}: {prompt}"


def where() -> tuple[int, int]:
    """The process and thread this body runs in."""
    return os.getpid(), threading.get_ident()


async def sleep_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def wait_for_gate(path: str, limit: float) -> str:
    """Block until the file ``path`` exists (the test opens the gate) or ``limit`` passes.

    A file, unlike a threading.Event, reaches bodies in other processes. The short sleep is
    this body's simulated work, not the test waiting.
    """
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "the gate never opened"
        time.sleep(0.005)
    return "opened"
