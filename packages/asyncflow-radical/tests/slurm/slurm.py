"""What the Slurm tests share: the docs' configuration, and what squeue says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

from asyncflow.testing.processes import ended, processes

# The example the docs give for a Slurm site, exactly as CI runs it.
CONFIG = Path(__file__).parents[4] / "docs" / "examples" / "slurm" / "asyncflow.toml"


def squeue(*args: str) -> list[str]:
    """Lines of ``squeue --noheader`` (jobs pending or running, unless asked otherwise)."""
    return subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.splitlines()


def job_id(batch_job: str | None) -> str:
    """``"42"`` of ``"Slurm job 42"``."""
    assert batch_job is not None and batch_job.startswith("Slurm job "), batch_job
    return batch_job.removeprefix("Slurm job ")


async def scancel(job: str) -> None:
    await asyncio.to_thread(subprocess.run, ["scancel", job], check=True, timeout=30)


async def line_from(fifo: Path, within: float) -> str:
    """The first line a task writes into ``fifo``, waiting at most ``within`` seconds."""
    return (await lines_from(fifo, 1, within))[0]


async def lines_from(fifo: Path, count: int, within: float) -> list[str]:
    """The first ``count`` lines tasks write into ``fifo``, waiting at most ``within`` seconds.

    Read from the loop (a blocking read in a thread could not be given up: its thread would
    hold the test process at exit). Opened read-write so that it never reads as ended while
    no writer has it open yet (Linux allows O_RDWR on a FIFO).
    """
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    lines: asyncio.Future[list[str]] = loop.create_future()
    data = bytearray()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            data.extend(os.read(fd, 4096))
        if data.count(b"\n") >= count and not lines.done():
            lines.set_result(data.decode().split("\n")[:count])

    loop.add_reader(fd, readable)
    try:
        return await asyncio.wait_for(lines, within)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def assert_ended(pids: list[str], within: float) -> None:
    """Fail unless the processes ``pids`` (on this host, as the cluster's nodes are) have all
    ended within ``within`` seconds."""
    left = await ended(pids, within)
    assert not left, f"still running {within:g} s after the task was stopped: " \
        f"{[f'{p.pid} {p.command}' for p in processes() if p.pid in left]}"
