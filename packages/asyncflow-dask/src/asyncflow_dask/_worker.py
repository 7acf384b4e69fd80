"""What runs on the Dask workers: task bodies, wrapped to announce their start and to be
stoppable.

Dask pickles these functions by reference, so ``asyncflow-dask`` (and ``asyncflow-core``)
must be installed where the workers run. Each wrapper gets a ``tag``,
``(backend token, task uid, Dask key)``, and announces the body's start with
:meth:`distributed.Worker.log_event` on :data:`TOPIC`: the event travels over the worker's
existing connection to the scheduler, which forwards it to the subscribed client.

``async def`` bodies and commands run as asyncio tasks on the worker's event loop, recorded in
``_stoppable`` so :func:`stop` can cancel them (cancelling a command kills its process group).
Plain ``def`` bodies run in a worker thread and cannot be interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from distributed import get_worker

from asyncflow import executables
from asyncflow.backend import TaskSpec
from asyncflow.errors import TaskTimeoutError

TOPIC = "asyncflow-task-started"
"""The Dask event topic every asyncflow backend shares (the scheduler keeps one bounded log
per topic, so one topic for all runs keeps a long-lived scheduler's memory flat)."""

Tag = tuple[str, str, str]

_stoppable: dict[str, asyncio.Task[Any]] = {}  # Dask key -> the running body, in this process


def _announce(tag: Tag) -> None:
    worker = get_worker()
    worker.log_event(TOPIC, [*tag, worker.address])


def call(tag: Tag, fn: Callable[..., Any], args: tuple[Any, ...],
         kwargs: Mapping[str, Any]) -> Any:
    """Run a plain ``def`` body (Dask runs this in one of the worker's threads)."""
    _announce(tag)
    return fn(*args, **kwargs)


async def call_async(tag: Tag, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                     kwargs: Mapping[str, Any], name: str, limit: float | None) -> Any:
    """Run an ``async def`` body on the worker's event loop, within ``limit`` seconds."""
    return await _run_stoppable(tag, fn(*args, **kwargs), name, limit)


async def run_command(tag: Tag, spec: TaskSpec) -> Any:
    """Run an executable task's command; its timeout is enforced by the shared runner."""
    return await _run_stoppable(tag, executables.run(spec), spec.name, None)


async def _run_stoppable(tag: Tag, body: Awaitable[Any], name: str,
                         limit: float | None) -> Any:
    key = tag[2]
    task = asyncio.ensure_future(body)
    _stoppable[key] = task
    try:
        _announce(tag)
        async with asyncio.timeout(limit):
            return await task  # cancelling us (worker closing) cancels the body too
    except TimeoutError:
        if task.cancelled():  # the deadline, not the body's own TimeoutError
            assert limit is not None
            raise TaskTimeoutError(name, limit) from None
        raise
    finally:
        _stoppable.pop(key, None)
        if not task.done():
            task.cancel()


def stop(keys: Iterable[str]) -> int:
    """Cancel the running bodies among ``keys`` in this worker; how many there were.

    Called through :meth:`distributed.Client.run`, which runs it on the worker's event loop.
    """
    stopped = 0
    for key in keys:
        task = _stoppable.get(key)
        if task is not None:
            task.cancel()
            stopped += 1
    return stopped
