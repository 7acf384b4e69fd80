"""One measurement in a fresh process; prints one JSON object as its last line.

    python benchmarks/child.py time    SYSTEM SHAPE   wall time, values checked, RSS
    python benchmarks/child.py memory  SYSTEM SHAPE   tracemalloc: bytes per task in flight
    python benchmarks/child.py soak    SYSTEM BATCHES SIZE   RSS after each batch
    python benchmarks/child.py profile SYSTEM SHAPE cprofile|pyinstrument OUT
    python benchmarks/child.py import                 time of `import asyncflow`
    python benchmarks/child.py create  BACKEND        create + shutdown, cold and warm

The driver (``run.py``) starts one child per (system, shape, repetition), so no measurement
inherits another's heap, caches or threads.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

WARMUP = 20  # tasks run before measuring, so lazy imports and first-call paths are paid


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: peak only


def rss_kib() -> int:
    """The resident set size now."""
    return _status_kib("VmRSS:")


def peak_rss_kib() -> int:
    """The highest resident set size of this process so far."""
    return _status_kib("VmHWM:")


async def open_system(name: str) -> Any:
    from systems import SYSTEMS

    module, function = SYSTEMS[name].opener.split(":")
    return await getattr(importlib.import_module(module), function)()


async def measure_time(system: str, shape_name: str) -> dict[str, Any]:
    from shapes import SHAPES, independent
    from systems import SYSTEMS

    shape = SHAPES[shape_name]
    t0 = time.perf_counter()
    api = await open_system(system)
    setup = time.perf_counter() - t0
    await independent(api, WARMUP)
    gc.collect()
    rss_before = rss_kib()
    t0, c0 = time.perf_counter(), time.process_time()
    value = await asyncio.wait_for(shape.run(api), shape.timeout)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_kib()
    gc.collect()
    rss_after = rss_kib()
    t0 = time.perf_counter()
    await api.close()
    shutdown = time.perf_counter() - t0
    checked = SYSTEMS[system].runs_bodies
    return {
        "wall": wall, "cpu": cpu, "setup": setup, "shutdown": shutdown,
        "checked": checked, "ok": (value == shape.expected) if checked else None,
        "value": value if checked else None, "expected": shape.expected,
        "rss_before_kib": rss_before, "peak_rss_kib": peak, "rss_after_kib": rss_after,
    }


async def measure_memory(system: str, shape_name: str) -> dict[str, Any]:
    """Python-heap bytes per task at the peak, and what is left once the tasks finished.

    The shape runs twice under tracemalloc. The first run's peak over the baseline, per task,
    is the cost of a task in flight (tables growing included). What the first run leaves is
    mostly capacity (dicts and sets do not shrink); what the second run adds on top of it is
    what finished tasks leave behind, and should be nothing.
    """
    from shapes import SHAPES, independent

    shape = SHAPES[shape_name]
    api = await open_system(system)
    await independent(api, WARMUP)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    settled = []
    peaks = []
    for _ in range(2):
        tracemalloc.reset_peak()
        await shape.run(api)
        peaks.append(tracemalloc.get_traced_memory()[1])
        await asyncio.sleep(0)  # let done-callbacks of the last completions run
        gc.collect()
        settled.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    tables = _engine_tables(api)
    await api.close()
    return {"peak_bytes": peaks[0] - base, "left_bytes": settled[0] - base,
            "left_second_bytes": settled[1] - settled[0], "tasks": shape.tasks,
            "tables": tables}


def _engine_tables(api: Any) -> dict[str, int] | None:
    flow = getattr(api, "flow", None)
    if flow is None or not hasattr(flow, "_records"):
        return None
    return {"records": len(flow._records), "asyncio_tasks": len(flow._tasks)}


async def measure_soak(system: str, batches: int, size: int) -> dict[str, Any]:
    from shapes import independent

    api = await open_system(system)
    await independent(api, WARMUP)
    gc.collect()
    rows = [{"batch": 0, "tasks": 0, "rss_kib": rss_kib(), "seconds": 0.0,
             "objects": len(gc.get_objects())}]
    start = time.perf_counter()
    for batch in range(1, batches + 1):
        value = await independent(api, size)
        if value is not None and value != sum(range(size)):
            raise AssertionError(f"batch {batch}: wrong sum {value}")
        seconds = time.perf_counter() - start
        gc.collect()  # what is alive now is what the batch left behind
        # Flat ints only: a row holding a dict would itself be a tracked object per batch.
        rows.append({"batch": batch, "tasks": batch * size, "rss_kib": rss_kib(),
                     "seconds": seconds, "objects": len(gc.get_objects()),
                     **(_engine_tables(api) or {})})
    await api.close()
    return {"rows": rows, "peak_rss_kib": peak_rss_kib()}


async def profile(system: str, shape_name: str, tool: str, out: str) -> dict[str, Any]:
    """The shape under cProfile or pyinstrument (both slow it down: read the shares, not the
    times); the report is written to ``out``."""
    from shapes import SHAPES, independent

    shape = SHAPES[shape_name]
    api = await open_system(system)
    await independent(api, WARMUP)
    if tool == "cprofile":
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        await shape.run(api)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        report = text.getvalue()
    else:
        import pyinstrument

        # async_mode "disabled": every sample, the event loop's callbacks included
        profiler = pyinstrument.Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        await shape.run(api)
        profiler.stop()
        report = profiler.output_text(unicode=True, show_all=False)
    await api.close()
    Path(out).write_text(report)  # noqa: ASYNC240 (the measurement is over)
    return {"out": out}


def measure_import() -> dict[str, Any]:
    t0 = time.perf_counter()
    import asyncflow  # noqa: F401

    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "modules": len(sys.modules)}


async def measure_create(backend: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from asyncflow import WorkflowEngine

    result: dict[str, Any] = {"import": time.perf_counter() - t0}
    for when in ("cold", "warm"):  # cold: the plugin registry is built on first use
        t0 = time.perf_counter()
        flow = await WorkflowEngine.create() if backend == "default" else \
            await WorkflowEngine.create(backend=backend)
        t1 = time.perf_counter()
        await flow.shutdown()
        result[f"create_{when}"] = t1 - t0
        result[f"shutdown_{when}"] = time.perf_counter() - t1
        result["backend"] = type(flow.backend).__name__
    return result


def main(argv: list[str]) -> None:
    kind, *args = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if kind == "time":
        result = asyncio.run(measure_time(*args))
    elif kind == "memory":
        result = asyncio.run(measure_memory(*args))
    elif kind == "soak":
        result = asyncio.run(measure_soak(args[0], int(args[1]), int(args[2])))
    elif kind == "profile":
        result = asyncio.run(profile(*args))
    elif kind == "import":
        result = measure_import()
    elif kind == "create":
        result = asyncio.run(measure_create(*args))
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:
        unavailable = type(exc).__name__ == "UnavailableError"
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}",
                          "unavailable": unavailable}))
        raise SystemExit(0 if unavailable else 1) from None
