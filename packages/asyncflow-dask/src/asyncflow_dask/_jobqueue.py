"""Workers as batch jobs: a dask-jobqueue cluster the backend starts by name and closes.

dask-jobqueue is an extra (``asyncflow-dask[jobqueue]``), imported only when a cluster is
asked for by kind, e.g. ``cluster = "slurm"``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping
from typing import Any

from asyncflow.errors import BackendError

__all__ = ["KINDS", "close", "job_of", "start"]

# kind -> (dask_jobqueue class, how its jobs are named in messages)
KINDS = {
    "slurm": ("SLURMCluster", "Slurm job"), "pbs": ("PBSCluster", "PBS job"),
    "sge": ("SGECluster", "SGE job"), "lsf": ("LSFCluster", "LSF job"),
    "htcondor": ("HTCondorCluster", "HTCondor job"), "oar": ("OARCluster", "OAR job"),
    "moab": ("MoabCluster", "Moab job"),
}


async def start(kind: str, options: Mapping[str, Any], *, jobs: int | None,
                adapt: Mapping[str, int] | None) -> Any:
    """A started jobqueue cluster of ``kind``, asking for ``jobs`` batch jobs (default one)
    or adapting between ``adapt["minimum"]`` and ``adapt["maximum"]`` jobs."""
    try:
        dask_jobqueue = importlib.import_module("dask_jobqueue")
    except ImportError as exc:
        raise BackendError(f"dask: cluster = {kind!r} starts workers through dask-jobqueue, "
                           "which is not installed: pip install 'asyncflow-dask[jobqueue]'"
                           ) from exc
    cls = getattr(dask_jobqueue, KINDS[kind][0])
    try:
        cluster = await cls(**options, asynchronous=True)
    except TypeError as exc:  # an option the cluster class does not take
        raise TypeError(f"dask: cluster = {kind!r}: {exc} (cluster_options go to "
                        f"dask_jobqueue.{cls.__name__})") from exc
    try:
        if adapt is not None:
            cluster.adapt(minimum_jobs=adapt.get("minimum", 0),
                          maximum_jobs=adapt.get("maximum", adapt.get("minimum", 1)))
        else:
            cluster.scale(jobs=1 if jobs is None else jobs)
    except BaseException:
        await cluster.close()
        raise
    return cluster


def job_of(cluster: Any, kind: str, worker: str | None) -> str | None:
    """``"Slurm job 42"`` for the batch job running the worker named ``worker``."""
    if worker is None:
        return None
    jobs = getattr(cluster, "workers", {})
    # A job of several worker processes names them <job name>-<i>.
    job = jobs.get(worker) or jobs.get(str(worker).rpartition("-")[0])
    job_id = getattr(job, "job_id", None)
    return None if job_id is None else f"{KINDS[kind][1]} {job_id}"


async def close(cluster: Any, seconds: float) -> None:
    """Close the cluster and cancel every batch job it still has, even when closing fails.

    A job whose worker died is closed by Dask's SpecCluster, but dask-jobqueue 0.9's
    ``Job.close`` does not mark it closed, and SpecCluster's close then asserts on it after
    it has cancelled the other jobs and stopped the scheduler, before the close of its base
    class, which is done here instead.
    """
    jobs = list(cluster.workers.values())
    try:
        await asyncio.wait_for(cluster.close(timeout=seconds), seconds)
    except AssertionError:  # the rest of the close: its base class's (status "closed")
        from distributed.deploy.cluster import Cluster

        await Cluster._close(cluster)  # type: ignore[no-untyped-call]
    finally:  # cancelling a job that has ended already is a no-op
        await asyncio.gather(*(job.close() for job in jobs), return_exceptions=True)
