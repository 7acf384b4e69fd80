"""The concurrent backend's cost per task in each of its modes, next to raw asyncio, in one run.

    python benchmarks/concurrent_overhead.py [--reps 3] [--tasks 2000] [--process-tasks 300]
                                             [--json PATH]

Six combinations: three engines, one per executor (none, ``ThreadPoolExecutor(6)``,
``ProcessPoolExecutor(2)``), each with an ``async def`` and a plain ``def`` body that adds one
to its argument. Each repetition runs, in alternating order so that drift hits all alike:

* ``chain``: N tasks, each taking the previous one's future as its argument, so the engine
  releases each when the one before is done; only the last is awaited. Per dependency level.
* ``independent``: N tasks, all submitted, then ``asyncio.gather``. Per task.

Raw asyncio does the same without the engine, as the floor: ``asyncio.create_task`` for the
``async def`` body on the loop; otherwise ``loop.run_in_executor`` of the plain ``def`` body on
a pool of the same kind and size (its own), which is the hop to the pool and back. Its chain
awaits each level before it starts the next.

N is ``--tasks``, or ``--process-tasks`` for the process pool. Every body runs once before
the first repetition (the warm-up: worker threads, processes and their event loops started).
The table quotes the best (fastest) repetition, the one least disturbed by other jobs on the
machine, with the median next to it. Every run's value is checked: a wrong one is marked in
the table and the exit status is 1, as it is when a worker process outlives ``shutdown()``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from overhead import keep, machine

RESULTS = Path(__file__).parent / "results" / "concurrent_overhead.json"
# Per mode, the pool its bodies run on (no executor: the backend's own, for plain bodies).
POOLS: dict[str, Callable[[], Executor]] = {
    "no executor": ThreadPoolExecutor,
    "ThreadPoolExecutor(6)": lambda: ThreadPoolExecutor(6),
    "ProcessPoolExecutor(2)": lambda: ProcessPoolExecutor(2),
}
SHAPES = ("chain", "independent")
SYSTEMS = ("raw", "asyncflow")

Run = Callable[[], Awaitable[Any]]


async def ainc(x: int) -> int:
    return x + 1


def inc(x: int) -> int:
    return x + 1


BODIES = {"async def": ainc, "def": inc}


async def timed(run: Run, expected: Any) -> tuple[float, bool]:
    """Wall time of one run, and whether it produced the value it must."""
    start = time.perf_counter()
    value = await run()
    return time.perf_counter() - start, value == expected


def flow_runs(task: Callable[[Any], Any], n: int) -> dict[str, Run]:
    async def chain() -> int:
        x: Any = 0
        for _ in range(n):
            x = task(x)  # a future as argument: a dependency the engine resolves
        return int(await x)

    async def independent() -> list[int]:
        return list(await asyncio.gather(*(task(i) for i in range(n))))

    return {"chain": chain, "independent": independent}


def raw_runs(call: Callable[[int], Awaitable[int]], n: int) -> dict[str, Run]:
    async def chain() -> int:
        x = 0
        for _ in range(n):
            x = await call(x)
        return x

    async def independent() -> list[int]:
        return list(await asyncio.gather(*(call(i) for i in range(n))))

    return {"chain": chain, "independent": independent}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from asyncflow import WorkflowEngine
    from asyncflow_concurrent import ConcurrentExecutionBackend

    modes = list(POOLS)
    combos = [(mode, body) for mode in modes for body in BODIES]
    counts = {mode: args.process_tasks if "Process" in mode else args.tasks for mode in modes}
    samples: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {
        combo: {shape: {system: [] for system in SYSTEMS} for shape in SHAPES}
        for combo in combos}
    wrong: list[str] = []
    pools = {mode: make() for mode, make in POOLS.items()}  # raw asyncio's
    flows: dict[str, Any] = {}
    try:
        for mode in modes:
            flows[mode] = await WorkflowEngine.create(backend=ConcurrentExecutionBackend(
                None if mode == "no executor" else POOLS[mode]()))
        calls: dict[tuple[str, str], dict[str, Callable[[Any], Awaitable[Any]]]] = {}
        for mode, body in combos:
            calls[mode, body] = {"raw": raw_call(mode, body, pools[mode]),
                                 "asyncflow": flows[mode].function_task(BODIES[body])}
        for combo, systems in calls.items():  # the warm-up
            for system, call in systems.items():
                if await call(1) != 2:
                    wrong.append(f"{combo[0]}, {combo[1]}, {system}, warm-up")
        runs = [(combo, system) for combo in combos for system in SYSTEMS]
        for rep in range(args.reps):
            for combo, system in runs if rep % 2 == 0 else reversed(runs):
                n = counts[combo[0]]
                make = flow_runs if system == "asyncflow" else raw_runs
                expected = {"chain": n, "independent": [i + 1 for i in range(n)]}
                for shape, run in make(calls[combo][system], n).items():
                    elapsed, ok = await timed(run, expected[shape])
                    samples[combo][shape][system].append(elapsed)
                    if not ok:
                        wrong.append(f"{combo[0]}, {combo[1]}, {system}, {shape}, rep {rep + 1}")
                    print(f"  rep {rep + 1}: {combo[0]:<22} {combo[1]:<9} {system:<9} "
                          f"{shape:<11} {elapsed * 1e6 / n:8.1f} us"
                          f"{'' if ok else '  WRONG VALUE'}", file=sys.stderr, flush=True)
    finally:
        for flow in flows.values():
            await flow.shutdown()
        for pool in pools.values():
            pool.shutdown()
    left = [f"{p.name} (pid {p.pid})" for p in multiprocessing.active_children()]
    return summarize(samples, counts, wrong, left, args)


def raw_call(mode: str, body: str, pool: Executor) -> Callable[[int], Awaitable[int]]:
    """Raw asyncio's way to run one body of this combination, given its own pool."""
    if mode == "no executor" and body == "async def":  # the backend runs it on the loop
        return lambda x: asyncio.create_task(ainc(x))
    loop = asyncio.get_running_loop()
    return lambda x: loop.run_in_executor(pool, inc, x)


def summarize(samples: dict[tuple[str, str], dict[str, dict[str, list[float]]]],
              counts: dict[str, int], wrong: list[str], left: list[str],
              args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for (mode, body), shapes in samples.items():
        n = counts[mode]
        rows.append({"mode": mode, "body": body, "tasks": n, **{
            shape: {system: {"best_us": min(times) / n * 1e6,
                             "median_us": statistics.median(times) / n * 1e6,
                             "samples_s": times}
                    for system, times in systems.items()}
            for shape, systems in shapes.items()}})
    return {
        "benchmark": "concurrent_overhead", "reps": args.reps, "rows": rows,
        "wrong_values": wrong, "children_left": left,
        "machine": machine(),
    }


def table(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [f"Concurrent backend, cost per task with no-op bodies, best (median) of "
             f"{result['reps']} repetitions, Python {machine['python']}, {machine['date']}:", "",
             "| mode, body | tasks | per dependency level | raw asyncio | "
             "per independent task | raw asyncio |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["rows"]:
        cells = [f"{row[shape][system]['best_us']:,.0f} µs "
                 f"({row[shape][system]['median_us']:,.0f})"
                 for shape in SHAPES for system in reversed(SYSTEMS)]
        lines.append(f"| {row['mode']}, `{row['body']}` | {row['tasks']} | "
                     f"{' | '.join(cells)} |")
    lines.append("")
    for what in result["wrong_values"]:
        lines.append(f"WRONG VALUE: {what}")
    if result["children_left"]:
        lines.append(f"child processes left after shutdown: {result['children_left']}")
    if not result["wrong_values"] and not result["children_left"]:
        lines.append("every value right; no child process left after shutdown")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000,
                        help="chain levels and independent tasks per run")
    parser.add_argument("--process-tasks", type=int, default=300,
                        help="the same, with the process pool")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    keep(result, args.json, table(result))
    return 1 if result["wrong_values"] or result["children_left"] else 0


if __name__ == "__main__":  # required wherever worker processes start with 'spawn'
    raise SystemExit(main())
