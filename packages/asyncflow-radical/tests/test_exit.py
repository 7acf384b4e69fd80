"""A script that returns or raises without shutdown() exits at once on a pilot of its own,
warns once, and leaves no RADICAL-Pilot process (the other backends: tests/test_exit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import OPTIONS

SCRIPT = Path(__file__).parents[3] / "tests" / "exit_script.py"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_script_without_shutdown_exits_at_once(ending: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with (tmp_path / "stderr").open("w+") as stderr:
        # A session of its own: a pilot's daemons keep the group of the process that started
        # them, so what is left of this one is found by its session.
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), "radical", json.dumps(OPTIONS), str(fifo), ending],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:  # a pilot starts in ~30 s and stops in ~10 s; the bodies would run 300 s
            code = child.wait(240)
        finally:
            group = [p for p in psutil.process_iter() if _in_session(p, child.pid)]
            _, left = psutil.wait_procs(group, timeout=30)
            for process in left:
                process.kill()
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr.seek(0)
        err = stderr.read()
    assert code == (0 if ending == "return" else 1), err[-3000:]
    assert len([line for line in err.splitlines() if "shutdown() was not called" in line]) == 1
    assert not left, [p.pid for p in left]


def _in_session(process: psutil.Process, sid: int) -> bool:
    try:
        return os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False
