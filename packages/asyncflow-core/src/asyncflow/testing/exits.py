"""A script that forgets ``shutdown()``, and the check that it still exits and leaves nothing.

The promise every backend keeps: a workflow script that returns or raises while its tasks run,
without calling ``shutdown()``, exits promptly, warns once that shutdown() was not called, and
leaves no process behind (and, on a batch system, no job). Check yours::

    from asyncflow.testing.exits import run_without_shutdown

    def test_my_backend_exits(tmp_path):
        ended = run_without_shutdown("inline", {}, "raise", tmp_path, limit=60)
        ended.check()

The script runs in a child process that leads a session of its own, so whatever it leaves is
found by its session id. It starts a function task that would sleep 300 s and a 300 s command,
waits until the function's body runs (through a FIFO), then returns or raises. Run it by hand::

    python -m asyncflow.testing.exits <backend> <options as JSON> <fifo> return|raise

``options`` go to ``WorkflowEngine.create()``, so ``{"config": "asyncflow.toml"}`` picks a
configured backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncflow.testing.processes import session_processes

__all__ = ["Ending", "run_without_shutdown", "session_processes"]

WARNING = "shutdown() was not called"


@dataclass
class Ending:
    """How the script ended."""

    ending: str
    """``"return"`` or ``"raise"``: what the script was told to do."""
    code: int | None
    """Its exit code; ``None`` if it was still running at the limit (and was killed)."""
    stderr: str
    left: list[str] = field(default_factory=list)
    """``"<pid> <command>"`` of each process of its session still alive after it ended."""

    def check(self) -> None:
        """Assert the promise: exit code 0 or 1, one warning, nothing left."""
        tail = self.stderr[-3000:]
        assert self.code is not None, f"the script did not exit: {tail}"
        assert self.code == (0 if self.ending == "return" else 1), tail
        assert len([line for line in self.stderr.splitlines() if WARNING in line]) == 1, tail
        if self.ending == "raise":
            assert "RuntimeError: the script failed" in self.stderr, tail
        assert not self.left, f"left behind: {self.left}"


def run_without_shutdown(backend: str, options: dict[str, Any], ending: str, cwd: Path, *,
                         limit: float, linger: float = 10) -> Ending:
    """Run the script in ``cwd`` and wait up to ``limit`` seconds for it to exit; then give
    what it started ``linger`` seconds to end (a worker still exiting is not left behind)
    and kill whatever remains, reporting it in :attr:`Ending.left`."""
    fifo = cwd / "started.fifo"
    os.mkfifo(fifo)
    with (cwd / "stderr.txt").open("w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "asyncflow.testing.exits", backend, json.dumps(options),
             str(fifo), ending],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            code: int | None = child.wait(limit)
        except subprocess.TimeoutExpired:
            code = None
        left = _outlive(child.pid, linger)
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr.seek(0)
        return Ending(ending, code, stderr.read(), left)


def _outlive(sid: int, linger: float) -> list[str]:
    deadline = time.monotonic() + linger
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)  # a bounded wait for other processes to end: no event to await
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid} {command}" for pid, command in left.items()]


async def _forget_shutdown(backend: str, options: dict[str, Any], fifo: str,
                           ending: str) -> None:
    from asyncflow import WorkflowEngine

    flow = await WorkflowEngine.create(backend=backend, **options)

    @flow.function_task
    async def sleepy(fifo: str) -> None:
        await asyncio.to_thread(Path(fifo).write_text, "started")  # unblocks the reader
        await asyncio.sleep(300)

    @flow.executable_task
    async def sleeper() -> str:
        return "sleep 300"

    sleeper()
    sleepy(fifo)
    if backend != "noop":  # noop runs nothing
        await asyncio.to_thread(Path(fifo).read_text)  # the body runs
    if ending == "raise":
        raise RuntimeError("the script failed")


if __name__ == "__main__":  # worker processes (spawned) import this module too
    asyncio.run(_forget_shutdown(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3],
                                 sys.argv[4]))
