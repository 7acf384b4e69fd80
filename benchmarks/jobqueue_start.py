"""Dask on a batch system: worker jobs' start, a first task, the backend next to raw
``client.submit`` on the same jobqueue cluster, and the shutdown until the queue is empty.

    eval "$(scripts/slurm-cluster.sh env)"
    python benchmarks/jobqueue_start.py [--config docs/examples/slurm/dask.toml] \
        [--rounds 3] [--tasks 100] [--json PATH]

Each round starts a WorkflowEngine from the configuration (dask-jobqueue submits the worker
jobs with sbatch) and measures: ``create()`` to every worker job connected; one task on the
ready cluster (submit to result); ``--tasks`` independent no-op tasks, raw ``client.submit``
and then the backend, on the same workers; ``shutdown()``, and until ``squeue`` lists no job
pending or running. It prints the median of the rounds and writes every sample as JSON
(``benchmarks/results/jobqueue_start.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from overhead import keep, machine

from asyncflow import WorkflowEngine
from asyncflow_dask import DaskExecutionBackend

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "docs" / "examples" / "slurm" / "dask.toml"
RESULTS = Path(__file__).parent / "results" / "jobqueue_start.json"


def noop(i: int) -> int:
    return i


def jobs_queued() -> list[str]:
    return subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING", "--format=%i"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.split()


async def one_round(config: Path, tasks: int) -> dict[str, float]:
    began = time.perf_counter()
    flow = await WorkflowEngine.create(config=config)
    try:
        backend = flow.backend
        assert isinstance(backend, DaskExecutionBackend), backend
        client = backend.client
        jobs = len(jobs_queued())
        await client.wait_for_workers(jobs)
        sample = {"workers_ready_s": time.perf_counter() - began, "jobs": float(jobs)}
        task = flow.function_task(noop)
        first = time.perf_counter()
        await task(0)
        sample["first_task_s"] = time.perf_counter() - first

        raw = time.perf_counter()
        await client.gather([client.submit(noop, i, pure=False) for i in range(tasks)])
        sample["raw_ms_per_task"] = (time.perf_counter() - raw) * 1e3 / tasks
        ours = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(tasks)))
        sample["asyncflow_ms_per_task"] = (time.perf_counter() - ours) * 1e3 / tasks
    finally:
        stopping = time.perf_counter()
        await flow.shutdown()
        sample["shutdown_s"] = time.perf_counter() - stopping
    while jobs_queued():  # a bounded wait below: the jobs were cancelled, Slurm ends them
        if time.perf_counter() - stopping > 120:
            raise RuntimeError(f"worker jobs still queued 120 s after shutdown: {jobs_queued()}")
        await asyncio.sleep(0.5)
    sample["queue_empty_s"] = time.perf_counter() - stopping
    return sample


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if jobs_queued():
        raise SystemExit(f"the queue is not empty ({jobs_queued()}): start from an idle cluster")
    samples = [await one_round(args.config, args.tasks) for _ in range(args.rounds)]
    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    median["ratio"] = median["asyncflow_ms_per_task"] / median["raw_ms_per_task"]
    return {"config": str(args.config), "tasks": args.tasks, "rounds": args.rounds,
            "machine": machine(), "median": median, "samples": samples}


def report(results: dict[str, Any]) -> str:
    m = results["median"]
    return "\n".join([
        f"dask-jobqueue from {results['config']}: median of {results['rounds']} rounds",
        f"  create() to {m['jobs']:.0f} worker jobs connected  {m['workers_ready_s']:6.1f} s",
        f"  first task on the ready cluster          {m['first_task_s']:6.3f} s",
        f"  {results['tasks']} tasks: raw client.submit {m['raw_ms_per_task']:.2f} ms/task, "
        f"asyncflow {m['asyncflow_ms_per_task']:.2f} ms/task (x{m['ratio']:.2f})",
        f"  shutdown()                               {m['shutdown_s']:6.1f} s",
        f"  shutdown to an empty queue               {m['queue_empty_s']:6.1f} s"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.config, args.json = args.config.resolve(), args.json.resolve()
    os.chdir(tempfile.mkdtemp(prefix="jobqueue-start-"))  # where the jobs write slurm-*.out
    results = asyncio.run(main(args))
    keep(results, args.json, report(results))
