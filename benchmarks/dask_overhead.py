"""The Dask backend's cost per task next to raw ``client.submit``, on one cluster, in one run.

    python benchmarks/dask_overhead.py [--reps 3] [--tasks 1000] [--chain 100] [--json PATH]

One LocalCluster (2 worker processes, 1 thread each, on 127.0.0.1) serves every measurement.
Each repetition runs, in alternating order so that drift hits both alike:

* ``independent``: N tasks, all submitted, all awaited.
  raw: ``client.submit(inc, i, pure=False)`` N times, then ``await client.gather(futures)``;
  asyncflow: ``inc_task(i)`` N times through a WorkflowEngine on DaskExecutionBackend, then
  ``await asyncio.gather(*futures)``.
* ``chain``: each task takes the previous one's result, the next submitted when the last is
  done (the engine works that way: it settles each future with its value).
  raw: ``x = await client.submit(inc, x, pure=False)``; asyncflow: ``x = await inc_task(x)``.

It prints the median microseconds per task (per level for the chain) and the ratio to raw,
in wall time and in CPU time of this process (client, engine and the LocalCluster's
scheduler; it varies much less than wall time on a loaded machine), and writes them with
every sample as JSON. The goal for ``independent`` is a wall-time ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from overhead import keep, machine

RESULTS = Path(__file__).parent / "results" / "dask_overhead.json"
WARMUP = 50
GOAL = 1.2


def inc(x: int) -> int:
    return x + 1


async def timed(run: Callable[[], Awaitable[Any]], expected: Any) -> tuple[float, float]:
    """Wall time, and CPU time of this process (the client, the engine and, in a
    LocalCluster, the scheduler): the second hardly moves when other jobs load the machine."""
    start, cpu = time.perf_counter(), time.process_time()
    value = await run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if value != expected:
        raise AssertionError(f"wrong result: {value!r} != {expected!r}")
    return elapsed, cpu


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from asyncflow import WorkflowEngine
    from asyncflow_dask import DaskExecutionBackend

    n, levels = args.tasks, args.chain
    samples: dict[str, dict[str, list[float]]] = {
        "independent": {"raw": [], "asyncflow": []}, "chain": {"raw": [], "asyncflow": []}}
    cpu: dict[str, dict[str, list[float]]] = {
        "independent": {"raw": [], "asyncflow": []}, "chain": {"raw": [], "asyncflow": []}}
    with tempfile.TemporaryDirectory(prefix="dask-overhead-") as scratch:
        cluster = await LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                     scheduler_kwargs={"dashboard": False},
                                     local_directory=scratch, asynchronous=True)
        client = await Client(cluster, asynchronous=True, set_as_default=False)
        flow = await WorkflowEngine.create(backend=DaskExecutionBackend(cluster=cluster))
        inc_task = flow.function_task(inc)
        try:
            async def raw_independent() -> list[int]:
                futures = [client.submit(inc, i, pure=False) for i in range(n)]
                return list(await client.gather(futures))

            async def flow_independent() -> list[int]:
                return list(await asyncio.gather(*(inc_task(i) for i in range(n))))

            async def raw_chain() -> int:
                x = 0
                for _ in range(levels):
                    x = await client.submit(inc, x, pure=False)
                return x

            async def flow_chain() -> int:
                x = 0
                for _ in range(levels):
                    x = await inc_task(x)
                return x

            runs = {"independent": {"raw": raw_independent, "asyncflow": flow_independent},
                    "chain": {"raw": raw_chain, "asyncflow": flow_chain}}
            expected = {"independent": [i + 1 for i in range(n)], "chain": levels}
            await asyncio.gather(*(inc_task(i) for i in range(WARMUP)))
            await client.gather([client.submit(inc, i, pure=False) for i in range(WARMUP)])
            for rep in range(args.reps):
                for shape, systems in runs.items():
                    order = list(systems) if rep % 2 == 0 else list(reversed(systems))
                    for system in order:
                        elapsed, used = await timed(systems[system], expected[shape])
                        samples[shape][system].append(elapsed)
                        cpu[shape][system].append(used)
                        print(f"  rep {rep + 1}: {shape:<11} {system:<9} {elapsed:7.3f} s "
                              f"(cpu {used:.3f} s)", file=sys.stderr, flush=True)
        finally:
            await flow.shutdown()
            await client.close()
            await cluster.close()
    return summarize(samples, cpu, {"independent": n, "chain": levels}, args)


def summarize(samples: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]],
              counts: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    shapes = {}
    for shape, systems in samples.items():
        per_task = {s: statistics.median(v) / counts[shape] * 1e6 for s, v in systems.items()}
        cpu_per_task = {s: statistics.median(v) / counts[shape] * 1e6
                        for s, v in cpu[shape].items()}
        shapes[shape] = {
            "tasks": counts[shape],
            "us_per_task": per_task,
            "ratio": per_task["asyncflow"] / per_task["raw"],
            "cpu_us_per_task": cpu_per_task,
            "cpu_ratio": cpu_per_task["asyncflow"] / cpu_per_task["raw"],
            "samples_s": systems,
            "cpu_samples_s": cpu[shape],
        }
    return {
        "benchmark": "dask_overhead", "goal_ratio": GOAL, "reps": args.reps,
        "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
        "machine": machine(),
        "shapes": shapes,
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"Dask backend overhead, median of {result['reps']} repetitions "
             f"({result['cluster']}):", "",
             "| shape | tasks | raw client.submit | asyncflow on dask | ratio | "
             "client CPU raw | client CPU asyncflow | CPU ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for shape, row in result["shapes"].items():
        unit = "us/level" if shape == "chain" else "us/task"
        us, cpu = row["us_per_task"], row["cpu_us_per_task"]
        lines.append(f"| {shape} | {row['tasks']} | {us['raw']:,.0f} {unit} | "
                     f"{us['asyncflow']:,.0f} {unit} | {row['ratio']:.2f}x | "
                     f"{cpu['raw']:,.0f} {unit} | {cpu['asyncflow']:,.0f} {unit} | "
                     f"{row['cpu_ratio']:.2f}x |")
    ratio = result["shapes"]["independent"]["ratio"]
    verdict = "met" if ratio <= GOAL else "NOT met"
    lines += ["", f"goal: independent tasks at most {GOAL}x raw: {verdict} ({ratio:.2f}x)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1000, help="independent tasks per run")
    parser.add_argument("--chain", type=int, default=100, help="levels of the chain")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    keep(result, args.json, table(result))


if __name__ == "__main__":  # required: Dask starts its worker processes with 'spawn'
    main()
