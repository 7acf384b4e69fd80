"""SIGTERM and SIGINT at random points of a run, in a child process running a workflow with
executables and process tasks in flight: it exits promptly with the signal's own exit code
and leaves none of its processes behind."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import Record

SCRIPT = Path(__file__).parent / "workflows" / "signalled.py"
LIMIT = 60.0  # seconds the child may take to exit before the test fails
# What each signal leaves as exit status: SIGTERM terminates, SIGINT ends with
# KeyboardInterrupt, which Python turns back into death by SIGINT.
EXPECTED = {signal.SIGTERM: -signal.SIGTERM, signal.SIGINT: -signal.SIGINT}


def interrupt(signum: signal.Signals, after: int) -> tuple[float, int, int, int]:
    """Run the workflow, send ``signum`` after ``after`` lines; return the time it took to
    exit, its exit status, how many processes it had and how many of them outlived it."""
    child = subprocess.Popen([sys.executable, str(SCRIPT)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for _ in range(after):
            assert child.stdout.readline(), child.communicate()
        family = psutil.Process(child.pid).children(recursive=True)
        sent = time.monotonic()
        child.send_signal(signum)
        child.wait(LIMIT)
        took = time.monotonic() - sent
        _, alive = psutil.wait_procs(family, timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    for process in alive:  # the test leaves nothing either
        process.kill()
    return took, child.returncode, len(family), len(alive)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_at_a_random_point_ends_the_run_cleanly(
        signum: signal.Signals, short: bool, record: Record) -> None:
    rng = random.Random(signum)
    runs = 2 if short else 6
    results = [interrupt(signum, rng.randint(1, 40)) for _ in range(runs)]
    times = [took for took, _, _, _ in results]
    codes = sorted({code for _, code, _, _ in results})
    family = min(count for _, _, count, _ in results)
    left = sum(count for _, _, _, count in results)
    scenario = f"{signum.name} at {runs} random points (executables + process tasks)"
    record(scenario, "exit time, max (s)", round(max(times), 2))
    record(scenario, "exit codes", ", ".join(map(str, codes)))
    record(scenario, "processes left (of at least N in flight)", f"{left} (N={family})")
    # Pool workers and the long executables were running: the test interrupted real work.
    assert family >= 4, results
    assert codes == [EXPECTED[signum]] and left == 0, results
