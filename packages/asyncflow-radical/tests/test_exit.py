"""A script that returns or raises without shutdown() exits at once on a pilot of its own,
warns once, and leaves no RADICAL-Pilot process (the other backends: tests/test_exit.py; on
Slurm: slurm/test_slurm_exit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import OPTIONS

from asyncflow.testing.exits import run_without_shutdown


@pytest.mark.timeout(400)
@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_script_without_shutdown_exits_at_once(ending: str, tmp_path: Path) -> None:
    # A pilot starts in ~30 s and stops in ~10 s; the bodies would run 300 s. Its daemons
    # keep the session of the script that started them, so what is left is found there.
    run_without_shutdown("radical", OPTIONS, ending, tmp_path, limit=240, linger=30).check()
