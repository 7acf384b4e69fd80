"""A real Dask cluster from the command line: ``dask scheduler`` and ``dask worker`` processes
on 127.0.0.1, each in its own session so that stopping one stops everything it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

DASK = str(Path(sys.executable).with_name("dask"))
BODIES = str(Path(__file__).parent)  # dask_bodies.py, imported by reference on the workers


class Service:
    """One ``dask`` command running in the background; its output goes to ``log``."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str],
                 ready: str | None = None) -> None:
        self.log = log
        self.found = threading.Event()
        self.match: re.Match[str] | None = None
        self.proc = subprocess.Popen([DASK, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=dict(env),
                                     start_new_session=True)
        assert self.proc.stdout is not None
        self._drain = threading.Thread(target=self._copy, args=(self.proc.stdout, ready),
                                       daemon=True)
        self._drain.start()

    def _copy(self, stream: IO[str], ready: str | None) -> None:
        """Copy the output to the log (so the pipe never fills), watching for ``ready``."""
        with self.log.open("a") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if ready and self.match is None:
                    self.match = re.search(ready, line)
                    if self.match:
                        self.found.set()
        self.found.set()  # the process ended: whoever waits must not wait forever

    def wait_ready(self, timeout: float) -> re.Match[str]:
        if not self.found.wait(timeout) or self.match is None:
            self.stop()
            raise RuntimeError(f"{self.proc.args} did not start; see {self.log}:\n"
                               f"{self.log.read_text()[-3000:]}")
        return self.match

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process and everything in its session; SIGKILL after 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers: spawned workers, trackers
        self.proc.wait(15)
        self._drain.join(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def environment(**dask_config: str) -> dict[str, str]:
    """This environment, with the test bodies importable and ``DASK_*`` settings added."""
    paths = [BODIES, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **dask_config}


@contextlib.contextmanager
def dask_cluster(work: Path, nworkers: int = 2, nthreads: int = 3,
                 env: Mapping[str, str] | None = None) -> Iterator[tuple[str, Service]]:
    """Start a scheduler and one ``dask worker`` with ``nworkers`` processes; yield the
    scheduler's address and the scheduler service. Stops workers first, then the scheduler
    (the other order leaves workers retrying to reconnect)."""
    env = env or environment()
    scheduler = Service(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--dashboard-address", "127.0.0.1:0"], work / "scheduler.log", env,
                        ready=r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)")
    workers = None
    try:
        address = scheduler.wait_ready(60).group(1)
        workers = Service(["worker", address, "--nworkers", str(nworkers), "--nthreads",
                           str(nthreads), "--host", "127.0.0.1", "--no-dashboard",
                           "--local-directory", str(work / "workers"), "--death-timeout",
                           "30"], work / "workers.log", env)
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(nworkers, timeout=60)
        yield address, scheduler
    finally:
        if workers is not None:
            workers.stop()
        scheduler.stop()
