"""The batch job a pilot runs in, so that messages about the pilot can name it.

RADICAL-Pilot submits the pilot through psij and keeps the batch system's job id in its
launcher process; the client never learns it. The job's working directory is the pilot's
sandbox, though, and that the client knows.
"""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlparse

__all__ = ["scancel", "slurm_job", "steps"]


def slurm_job(sandbox: str | None) -> str | None:
    """The id of the Slurm job working in ``sandbox`` (a URL or path), if squeue knows one."""
    path = urlparse(sandbox or "").path.rstrip("/")
    squeue = shutil.which("squeue")
    if not path or squeue is None:
        return None
    try:
        listing = subprocess.run([squeue, "--noheader", "--me", "--format=%i|%Z"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        job, _, workdir = line.partition("|")
        if workdir.rstrip("/") == path:
            return job.strip()
    return None


def steps(job: str) -> list[tuple[str, str]]:
    """The steps of Slurm job ``job`` that srun started, as ``(step id, name)`` pairs, e.g.
    ``("42.3", "af12cd.task.000007.exec.sh")``: the name is the program srun started."""
    listing = subprocess.run(["squeue", "--noheader", "--steps", f"--jobs={job}",
                              "--format=%i|%j"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    found = []
    for line in listing.splitlines():
        step, _, name = line.strip().partition("|")
        if step.partition(".")[2].isdigit():  # not the job's batch, extern or interactive step
            found.append((step, name))
    return found


def scancel(*jobs: str) -> None:
    """End Slurm jobs or job steps (``"42"``, ``"42.3"``): their processes get SIGTERM, then
    SIGKILL after the site's KillWait. Returns once Slurm has taken the request."""
    subprocess.run(["scancel", *jobs], capture_output=True, text=True, timeout=30, check=True)
