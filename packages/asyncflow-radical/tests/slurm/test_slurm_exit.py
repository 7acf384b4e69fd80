"""A script on the Slurm site of the docs' example that returns or raises without shutdown():
it exits, warns once, and leaves no pilot job in squeue and no RADICAL-Pilot process."""

from __future__ import annotations

from pathlib import Path

import pytest
from slurm import CONFIG, squeue

from asyncflow.testing.exits import run_without_shutdown


@pytest.mark.timeout(500)
@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_script_without_shutdown_leaves_no_pilot_job(ending: str, tmp_path: Path) -> None:
    before = set(squeue("--format=%i"))
    # The pilot's batch job starts in ~30-90 s; the task and command would run 300 s.
    ended = run_without_shutdown("radical", {"config": str(CONFIG)}, ending, tmp_path,
                                 limit=300, linger=30)
    ended.check()
    assert set(squeue("--states=PENDING,RUNNING", "--format=%i")) <= before
