"""Per-task cost of the radical backend next to raw RADICAL-Pilot, on one pilot, in one run.

    bash packages/asyncflow-radical/tests/contained.sh benchmarks/radical_overhead.py \
        [--tasks 100] [--rounds 3] [--json PATH] [--config asyncflow.toml]

``--config`` starts the pilot from a configuration file instead, e.g. on the Slurm cluster of
scripts/slurm-cluster.sh: ``--config docs/examples/slurm/asyncflow.toml`` (results then go to
``benchmarks/results/radical_overhead_slurm.json``).

One pilot is started through a WorkflowEngine. Each round then runs, on that pilot, one batch
of ``--tasks`` trivial tasks four ways, alternating so that drift hits both sides alike:

- executables: ``/bin/true`` submitted with ``TaskManager.submit_tasks`` and awaited with
  ``wait_tasks`` (raw), then the same command as AsyncFlow executable tasks gathered by the
  engine;
- functions: a no-op function through the backend's RAPTOR master as ``rp.PythonTask`` (raw),
  then the same function as AsyncFlow function tasks.

It prints the pilot's start-up (submission to active), the latency of a first executable on
the active pilot, the shutdown time and, per way, the median milliseconds per
task and the ratio AsyncFlow / raw (goal: at most 1.1), and writes them as JSON
(``benchmarks/results/radical_overhead.json``). Round 0 warms up (RAPTOR starts, code paths
get imported) and is not counted. Outside contained.sh it uses ``local.localhost``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from overhead import keep

from asyncflow import WorkflowEngine
from asyncflow_radical import RadicalExecutionBackend

RESOURCE = os.environ.get("ASYNCFLOW_RADICAL_TEST_RESOURCE", "local.localhost")
RESULTS = Path(__file__).parent / "results" / "radical_overhead.json"


def noop() -> None:
    """The function both sides run."""


def raw_executables(backend: RadicalExecutionBackend, n: int, tag: str) -> float:
    rp, tmgr = _raw(backend)
    tds = [rp.TaskDescription({"uid": f"raw.{tag}.{i}", "executable": "/bin/true"})
           for i in range(n)]
    return _timed(lambda: tmgr.wait_tasks([t.uid for t in tmgr.submit_tasks(tds)],
                                          timeout=900))


def raw_functions(backend: RadicalExecutionBackend, n: int, tag: str) -> float:
    rp, tmgr = _raw(backend)
    master = backend._job.raptor_master()  # type: ignore[union-attr]  # the backend's RAPTOR
    tds = [rp.TaskDescription({"uid": f"raw.{tag}.{i}", "mode": rp.TASK_FUNCTION,
                               "raptor_id": master, "function": rp.PythonTask(noop, (), {})})
           for i in range(n)]
    return _timed(lambda: tmgr.wait_tasks([t.uid for t in tmgr.submit_tasks(tds)],
                                          timeout=900))


def _raw(backend: RadicalExecutionBackend) -> tuple[Any, Any]:
    # The session's own TaskManager: raw RADICAL-Pilot, next to the backend, on its pilot.
    job = backend._job
    assert job is not None
    return job.rp, job._tmgr


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


async def engine_batch(flow: WorkflowEngine, n: int, kind: str) -> float:
    if kind == "executables":
        task = flow.executable_task(lambda: "/bin/true")
    else:
        task = flow.function_task(noop)
    start = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(n)))
    return time.perf_counter() - start


async def main(tasks: int, rounds: int, config: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    if config is None:
        flow = await WorkflowEngine.create(backend=RadicalExecutionBackend(resource=RESOURCE,
                                                                           runtime=30))
    else:
        flow = await WorkflowEngine.create(config=config)
    backend = flow.backend
    assert isinstance(backend, RadicalExecutionBackend)
    results: dict[str, Any] = {"resource": backend.resource, "batch_job": backend.batch_job,
                               "tasks": tasks, "rounds": rounds,
                               "pilot_startup_s": time.perf_counter() - started}
    try:
        results["first_task_s"] = await engine_batch(flow, 1, "executables")
        per_task: dict[str, list[float]] = {}
        for r in range(rounds + 1):
            for kind, raw in (("executables", raw_executables), ("functions", raw_functions)):
                raw_s = await asyncio.to_thread(raw, backend, tasks, f"{kind}.{r}")
                ours_s = await engine_batch(flow, tasks, kind)
                if r:  # round 0 warms up
                    per_task.setdefault(f"{kind}.raw", []).append(raw_s / tasks * 1e3)
                    per_task.setdefault(f"{kind}.asyncflow", []).append(ours_s / tasks * 1e3)
        for kind in ("executables", "functions"):
            raw_ms = statistics.median(per_task[f"{kind}.raw"])
            ours_ms = statistics.median(per_task[f"{kind}.asyncflow"])
            results[kind] = {"raw_ms_per_task": per_task[f"{kind}.raw"],
                             "asyncflow_ms_per_task": per_task[f"{kind}.asyncflow"],
                             "median_raw_ms": raw_ms, "median_asyncflow_ms": ours_ms,
                             "ratio": ours_ms / raw_ms}
    finally:
        stopping = time.perf_counter()
        await flow.shutdown()
        results["shutdown_s"] = time.perf_counter() - stopping
    return results


def report(results: dict[str, Any]) -> str:
    lines = [f"radical backend on {results['resource']}: {results['tasks']} tasks per batch, "
             f"{results['rounds']} rounds (median)",
             f"  pilot start-up  {results['pilot_startup_s']:6.1f} s "
             f"({results.get('batch_job') or 'no batch job'})",
             f"  first task      {results['first_task_s']:6.2f} s",
             f"  shutdown        {results['shutdown_s']:6.1f} s"]
    for kind in ("executables", "functions"):
        if kind in results:
            row = results[kind]
            lines.append(f"  {kind:<12}  raw {row['median_raw_ms']:7.1f} ms/task   asyncflow "
                         f"{row['median_asyncflow_ms']:7.1f} ms/task   ratio "
                         f"{row['ratio']:.2f} (goal <= 1.1)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks per batch")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds")
    parser.add_argument("--json", type=Path, default=None, help="where to write results")
    parser.add_argument("--config", type=Path, default=None,
                        help="start the pilot from this asyncflow.toml")
    args = parser.parse_args()
    default = RESULTS if args.config is None else RESULTS.with_name("radical_overhead_slurm.json")
    outcome = asyncio.run(main(args.tasks, args.rounds, args.config))
    args.json = args.json or default
    keep(outcome, args.json, report(outcome))
