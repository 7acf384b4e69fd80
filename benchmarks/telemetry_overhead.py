"""The cost per task of telemetry (asyncflow-otel): off, installed but idle, and on.

    python benchmarks/telemetry_overhead.py [--reps 3] [--tasks 5000] [--json PATH]

N independent tasks with a no-op ``async def`` body on the concurrent backend (on the event
loop, the cheapest real backend, so the engine's and the plugin's share shows), gathered.
Each setting runs in its own interpreter (OpenTelemetry's providers are per process):

* ``off``: ``ASYNCFLOW_TELEMETRY=off`` (``telemetry = false`` from the environment): the
  plugin sits the engine out, so the engine calls none of its hooks, as when the package is
  not installed;
* ``idle``: the plugin on, but no telemetry for this engine (no SDK configured, no
  ``start_telemetry()``): each hook call is one dictionary lookup;
* ``on (simple)``: ``start_telemetry()`` with a ``SimpleSpanProcessor`` into the SDK's
  in-memory exporter and an in-memory metric reader: every span is built, ended and exported
  on the loop;
* ``on (batch)``: the same with a ``BatchSpanProcessor``, which exports from its own thread
  (what a deployment with an OTLP exporter uses).

Every setting runs each repetition in alternating order after a warm-up; the table quotes the
best repetition with the median next to it, in µs per task, and the difference to ``off``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from overhead import keep, machine

RESULTS = Path(__file__).parent / "results" / "telemetry_overhead.json"
SETTINGS = ("off", "idle", "on (simple)", "on (batch)")


async def noop(i: int) -> int:
    return i


async def one_setting(setting: str, tasks: int, reps: int) -> list[float]:
    """Seconds per run of ``tasks`` independent tasks, ``reps`` times (in this process)."""
    from asyncflow import WorkflowEngine

    async with WorkflowEngine.create("concurrent") as flow:
        if setting.startswith("on"):
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )

            exporter = InMemorySpanExporter()
            processor = (SimpleSpanProcessor if "simple" in setting else BatchSpanProcessor)(
                exporter)
            await flow.start_telemetry(span_processors=[processor],
                                       metric_readers=[InMemoryMetricReader()])
        task = flow.function_task(noop)
        await asyncio.gather(*(task(i) for i in range(200)))  # warm-up
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            values = await asyncio.gather(*(task(i) for i in range(tasks)))
            times.append(time.perf_counter() - start)
            assert values == list(range(tasks)), "wrong values"
            if setting.startswith("on"):
                exporter.clear()  # memory stays flat between repetitions
    return times


def child(setting: str, tasks: int) -> float:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if setting == "off":
        env["ASYNCFLOW_TELEMETRY"] = "off"
    else:
        env.pop("ASYNCFLOW_TELEMETRY", None)
    out = subprocess.run([sys.executable, __file__, "--child", setting, "--tasks", str(tasks)],
                         capture_output=True, text=True, env=env, check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    for rep in range(args.reps):
        for setting in SETTINGS if rep % 2 == 0 else reversed(SETTINGS):
            seconds = child(setting, args.tasks)
            samples[setting].append(seconds)
            print(f"  rep {rep + 1}: {setting:<12} {seconds * 1e6 / args.tasks:8.1f} us",
                  file=sys.stderr, flush=True)
    n = args.tasks
    rows = {setting: {"best_us": min(times) / n * 1e6,
                      "median_us": statistics.median(times) / n * 1e6, "samples_s": times}
            for setting, times in samples.items()}
    return {"benchmark": "telemetry_overhead", "reps": args.reps, "tasks": n, "rows": rows,
            "machine": machine()}


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    floor = rows["off"]["best_us"]
    lines = [f"Telemetry, cost per task ({result['tasks']} independent no-op tasks on the "
             f"concurrent backend's loop), best (median) of {result['reps']} repetitions, "
             f"Python {result['machine']['python']}, {result['machine']['date']}:", "",
             "| setting | per task | added by telemetry |", "| --- | ---: | ---: |"]
    for setting, row in rows.items():
        lines.append(f"| {setting} | {row['best_us']:,.1f} µs ({row['median_us']:,.1f}) | "
                     f"{row['best_us'] - floor:+,.1f} µs |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement: the best of three runs in this interpreter
        times = asyncio.run(one_setting(args.child, args.tasks, 3))
        print(json.dumps({"seconds": min(times)}))
        return 0
    result = measure(args)
    keep(result, args.json, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
