"""Exits that always end: a script that returns or raises without calling shutdown() exits
at once on every backend, warns once that shutdown() was not called, and leaves no process.

Each case runs tests/exit_script.py in a child process of its own session; its task and its
command would run 300 s, and the child is given 60 s (a bound, not a timing threshold: an
exit that waited for the bodies would not make it). The radical backend's case is in its own
package's tests, which run where RADICAL-Pilot can start pilots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

SCRIPT = Path(__file__).with_name("exit_script.py")

BACKENDS = [
    ("noop", {}),
    ("concurrent", {}),  # async bodies on the loop, commands as subprocesses
    ("concurrent", {"executor": "threads"}),  # an async body in a worker thread's loop
    ("concurrent", {"executor": "processes"}),
    ("dask", {"n_workers": 1, "threads_per_worker": 1}),
]


def session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["return", "raise"])
@pytest.mark.parametrize(("backend", "options"), BACKENDS,
                         ids=[f"{b}-{o.get('executor', 'default')}" for b, o in BACKENDS])
def test_a_script_without_shutdown_exits_at_once(backend: str, options: dict[str, object],
                                                 ending: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with (tmp_path / "stderr").open("w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), backend, json.dumps(options), str(fifo), ending],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            code = child.wait(60)
        finally:  # what is left a moment after (a worker process still exiting is not)
            _, leftovers = psutil.wait_procs(session_processes(child.pid), timeout=10)
            leftovers = [p for p in leftovers if _alive(p)]
            for process in leftovers:
                process.kill()
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr.seek(0)
        err = stderr.read()
    assert code == (0 if ending == "return" else 1), err
    warnings = [line for line in err.splitlines() if "shutdown() was not called" in line]
    assert len(warnings) == 1, err
    if ending == "raise":
        assert "RuntimeError: the script failed" in err
    assert not leftovers, [p.info["name"] for p in leftovers]
