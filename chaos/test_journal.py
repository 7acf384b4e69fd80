"""A journaled run killed with SIGKILL at random points and resumed each time: no task that
completed before a kill runs again, the journal stays whole, and the run finishes. Two
processes resuming one run at once: one of them gets a clear error."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Record

from asyncflow.journal import FILENAME, read_run

SCRIPT = Path(__file__).parent / "workflows" / "journaled.py"
COUNT = 2_000
LIMIT = 300.0


def command(work: Path) -> list[str]:
    return [sys.executable, str(SCRIPT), str(work / "runs"), str(work), str(COUNT)]


def kill_after(work: Path, lines: int) -> None:
    child = subprocess.Popen(command(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        for _ in range(lines):
            assert child.stdout.readline(), child.communicate()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.communicate(timeout=LIMIT)
    assert child.returncode == -signal.SIGKILL


def completed(run_dir: Path) -> set[str]:
    run = read_run(run_dir)
    return {task.uid for task in run.tasks.values() if task.state == "DONE"}


@pytest.mark.timeout(900)
def test_a_run_killed_at_random_points_never_reruns_a_completed_task(
        tmp_path: Path, short: bool, record: Record) -> None:
    rng = random.Random(15)
    kills = 2 if short else 5
    run_dir = tmp_path / "runs" / "killed"
    done_before: set[int] = set()
    rerun = 0
    for _ in range(kills):
        kill_after(tmp_path, rng.randint(50, COUNT // (kills + 1)))
        ran = {int(line) for path in tmp_path.glob("ran.*.txt")
               for line in path.read_text().split()}
        # Calls are numbered in call order (task.000001 is step(0)), in every session alike.
        # DONE: run in this session, or resumed from an earlier one.
        done = {int(uid.split(".")[1]) - 1 for uid in completed(run_dir)}
        assert done <= ran | done_before
        for path in tmp_path.glob("ran.*.txt"):
            path.rename(path.with_suffix(".seen"))
        rerun += len(ran & done_before)
        done_before |= done
    finished = subprocess.run(command(tmp_path), capture_output=True, text=True,
                              timeout=LIMIT)
    assert finished.returncode == 0, finished.stderr
    last = [int(line) for path in tmp_path.glob("ran.*.txt") for line in path.read_text().split()]
    rerun += len(set(last) & done_before)
    with sqlite3.connect(run_dir / FILENAME) as journal:
        integrity = journal.execute("PRAGMA integrity_check").fetchone()[0]
    scenario = f"journaled run of {COUNT:,} tasks, SIGKILL at {kills} random points, resumed"
    record(scenario, "completed tasks run again", rerun)
    record(scenario, "PRAGMA integrity_check", integrity)
    record(scenario, "tasks DONE at the end", len(completed(run_dir)))
    assert (rerun, integrity) == (0, "ok")
    assert len(completed(run_dir)) == COUNT


@pytest.mark.timeout(900)
def test_two_processes_resuming_one_run_at_once_get_a_clear_error(
        tmp_path: Path, record: Record) -> None:
    kill_after(tmp_path, 100)  # a run to resume
    both = [subprocess.Popen(command(tmp_path), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [child.communicate(timeout=LIMIT)[1] for child in both]
    codes = [child.returncode for child in both]
    refused = [error for code, error in zip(codes, errors, strict=True) if code != 0]
    record("two processes resume one run at once", "exit codes", ", ".join(map(str, codes)))
    assert len(refused) == 1, f"exit codes {codes}: one resume must be refused"
    assert "killed" in refused[0], f"the error does not name the run: {refused[0][-2000:]}"
