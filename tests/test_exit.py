"""Exits that always end: a script that returns or raises without calling shutdown() exits
at once on every backend, warns once that shutdown() was not called, and leaves no process.

Each case runs the conformance kit's script (asyncflow.testing.exits) in a child process of
its own session; its task and its command would run 300 s, and the child is given 60 s (a
bound, not a timing threshold: an exit that waited for the bodies would not make it). The
radical backend's case is in its own package's tests, which run where RADICAL-Pilot can start
pilots; the batch-system cases (RADICAL-Pilot, dask-jobqueue) in their Slurm tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncflow.testing.exits import run_without_shutdown

BACKENDS = [
    ("noop", {}),
    ("concurrent", {}),  # async bodies on the loop, commands as subprocesses
    ("concurrent", {"executor": "threads"}),  # an async body in a worker thread's loop
    ("concurrent", {"executor": "processes"}),
    ("dask", {"n_workers": 1, "threads_per_worker": 1}),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["return", "raise"])
@pytest.mark.parametrize(("backend", "options"), BACKENDS,
                         ids=[f"{b}-{o.get('executor', 'default')}" for b, o in BACKENDS])
def test_a_script_without_shutdown_exits_at_once(backend: str, options: dict[str, object],
                                                 ending: str, tmp_path: Path) -> None:
    run_without_shutdown(backend, options, ending, tmp_path, limit=60).check()
