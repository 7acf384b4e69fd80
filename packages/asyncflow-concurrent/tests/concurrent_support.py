"""What the tests share: backends per mode, child processes, named pipes, task states.

Task bodies used in worker processes live here, in an importable module, so that they pickle
by reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncflow
from asyncflow.backend import TaskState
from asyncflow.testing.processes import ended
from asyncflow_concurrent import ConcurrentExecutionBackend

MODES = ("loop", "threads", "processes")
LIMIT = 30.0  # seconds any awaited event may take before the test fails


def make_backend(mode: str, workers: int = 2) -> ConcurrentExecutionBackend:
    """A backend in ``mode``, built the way the seed builds one."""
    if mode == "loop":
        return ConcurrentExecutionBackend()
    if mode == "threads":
        return ConcurrentExecutionBackend(ThreadPoolExecutor(workers))
    return ConcurrentExecutionBackend(ProcessPoolExecutor(workers))


# -- child processes -----------------------------------------------------------------------


async def exited(pid: int) -> None:
    """Return once process ``pid`` has ended (at once if it is gone); fail after LIMIT."""
    assert not await ended([pid], LIMIT), f"process {pid} still runs after {LIMIT:g} s"


# -- named pipes: a body tells the test something, or waits for it -------------------------


def fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


async def receive(path: str) -> str:
    """What a body writes into the named pipe ``path`` (waits for the body to write it)."""
    return await _blocking(path, _read, os.O_WRONLY)


async def release(path: str, text: str = "go") -> None:
    """Send ``text`` to the body waiting in :func:`wait_for` on ``path``."""
    await _blocking(path, lambda p: _write(p, text), os.O_RDONLY)


async def _blocking(path: str, call: Any, other_end: int) -> Any:
    thread = asyncio.ensure_future(asyncio.to_thread(call, path))
    try:
        async with asyncio.timeout(LIMIT):
            return await asyncio.shield(thread)
    except TimeoutError:  # the body never came: open the other end so the thread can end
        with contextlib.suppress(OSError):
            os.close(os.open(path, other_end | os.O_NONBLOCK))
        with contextlib.suppress(OSError):
            await thread
        raise


def _read(path: str) -> str:
    with open(path) as pipe:
        return pipe.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as pipe:
        pipe.write(text)


# -- task bodies for worker processes -----------------------------------------------------


def wait_for(path: str) -> str:
    """Block until the test :func:`release` s the pipe; return what it sent."""
    return _read(path)


async def wait_for_async(path: str) -> str:
    return await asyncio.to_thread(_read, path)


def send_pid_then_work(path: str, seconds: float) -> str:
    """Tell the test this process's pid, then work (sleep) for ``seconds``."""
    _write(path, str(os.getpid()))
    time.sleep(seconds)
    return "worked"


async def send_pid_then_work_async(path: str, seconds: float) -> str:
    _write(path, str(os.getpid()))
    await asyncio.sleep(seconds)
    return "worked"


def work_once(marker: str, path: str) -> str:
    """The first run tells its pid and works long; a run after that returns at once."""
    if not os.path.exists(marker):
        Path(marker).touch()
        send_pid_then_work(path, LIMIT)
        return "first run finished"
    return "ran again"


# -- task states through the engine's observer hook ----------------------------------------


class StateWatch:
    """An asyncflow plugin that lets a test await a task's state."""

    def __init__(self) -> None:
        self.history: dict[str, list[TaskState]] = {}
        self._waiters: dict[tuple[str, TaskState], list[asyncio.Future[None]]] = {}

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task: Any, new: TaskState) -> None:
        self.history.setdefault(task.uid, []).append(new)
        for waiter in self._waiters.pop((task.uid, new), []):
            if not waiter.done():
                waiter.set_result(None)

    async def reached(self, future: Any, state: TaskState = TaskState.RUNNING) -> None:
        if state in self.history.get(future.uid, ()):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((future.uid, state), []).append(waiter)
        async with asyncio.timeout(LIMIT):
            await waiter


async def fail_when_released(path: str) -> None:
    """Raise ``ValueError`` once the test :func:`release` s the pipe."""
    raise ValueError(f"boom ({await asyncio.to_thread(_read, path)})")


def same(x: Any) -> Any:
    return x
