"""What the Slurm tests share: the docs' configuration, and what squeue says."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

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
