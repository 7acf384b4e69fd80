"""Medians, ratios to the floor, the targets, and the Markdown report of one benchmark run."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from shapes import SHAPES
from systems import SYSTEMS

KIB = 1024

# The targets of the performance issue, as ratios to the floor measured in the same run.
ON_LOOP = ("asyncflow-noop", "asyncflow-onloop")
WIDE_LIMIT, CHAIN_LIMIT, THREAD_LIMIT = 3.0, 5.0, 1.3
SEED_EXCESS_LIMIT = 0.020  # seconds over the 3.0 s critical path
HEAP_PER_TASK_LIMIT = 2 * KIB  # bytes per task in flight
LEFT_LIMIT = 16 * KIB  # bytes still allocated once every task finished ("back to baseline")
IMPORT_LIMIT = 0.080  # seconds


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rows: list[dict[str, Any]], systems: list[str], shapes: list[str]
              ) -> dict[str, Any]:
    walls: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "time":
            walls[row["system"], row["shape"]].append(row)
    times: dict[str, dict[str, Any]] = defaultdict(dict)
    wrong = []
    for (system, shape), runs in walls.items():
        good = [r for r in runs if "wall" in r]
        errors = sorted({r["error"] for r in runs if "error" in r})
        bad = [r for r in good if r.get("ok") is False]
        if bad:
            wrong.append({"system": system, "shape": shape,
                          "values": [r.get("value") for r in bad],
                          "expected": SHAPES[shape].expected})
        entry: dict[str, Any] = {"reps": len(good), "errors": errors, "wrong": bool(bad),
                                 "checked": bool(good) and all(r["checked"] for r in good)}
        if good:
            wall = _median([r["wall"] for r in good])
            assert wall is not None
            units = SHAPES[shape].tasks
            entry.update(
                wall=wall, wall_min=min(r["wall"] for r in good),
                wall_max=max(r["wall"] for r in good),
                us_per_task=wall / units * 1e6, tasks_per_s=units / wall,
                cpu=_median([r["cpu"] for r in good if "cpu" in r]),
                peak_rss_kib=_median([r["peak_rss_kib"] for r in good]),
                growth_per_task=_median([(r["peak_rss_kib"] - r["rss_before_kib"]) * KIB / units
                                         for r in good]),
                left_kib=_median([r["rss_after_kib"] - r["rss_before_kib"] for r in good]),
                setup=_median([r["setup"] for r in good]),
                shutdown=_median([r["shutdown"] for r in good]),
            )
        times[system][shape] = entry
    for system in times:
        floor = SYSTEMS[system].floor
        for shape, entry in times[system].items():
            base = times.get(floor, {}).get(shape, {})
            if "wall" in entry and base.get("wall"):
                entry["ratio"] = entry["wall"] / base["wall"]
            if entry.get("cpu") and base.get("cpu"):
                entry["cpu_ratio"] = entry["cpu"] / base["cpu"]

    memory: dict[str, Any] = {}
    for system in systems:
        runs = [r for r in rows if r["kind"] == "memory" and r["system"] == system
                and "peak_bytes" in r]
        if runs:
            memory[system] = {
                "shape": runs[0]["shape"],
                "peak_per_task": _median([r["peak_bytes"] / r["tasks"] for r in runs]),
                "left_bytes": _median([r["left_bytes"] for r in runs]),
                "left_second_bytes": _median([r["left_second_bytes"] for r in runs]),
                "tables": runs[-1].get("tables"),
            }

    startup: dict[str, Any] = {}
    imports = [r["seconds"] for r in rows if r["kind"] == "import" and "seconds" in r]
    if imports:
        startup["import"] = {"median": _median(imports), "min": min(imports),
                             "max": max(imports), "reps": len(imports)}
    for backend in ("noop", "default"):
        runs = [r for r in rows if r["kind"] == "create" and r.get("system") == backend
                and "create_cold" in r]
        if runs:
            startup[backend] = {key: _median([r[key] for r in runs]) for key in (
                "create_cold", "shutdown_cold", "create_warm", "shutdown_warm")}
            startup[backend]["backend"] = runs[-1]["backend"]

    soak = {r["system"]: r for r in rows if r["kind"] == "soak"}
    summary = {"times": dict(times), "memory": memory, "startup": startup, "soak": soak,
               "wrong_values": wrong}
    summary["targets"] = targets(summary)
    return summary


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    times, memory, startup = summary["times"], summary["memory"], summary["startup"]
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, limit: float, shown: str) -> None:
        out.append({"target": what, "value": value, "limit": limit, "shown": shown,
                    "met": None if value is None else value <= limit})

    for system in ON_LOOP:
        for shape, entry in times.get(system, {}).items():
            if shape.startswith("S5"):
                continue
            limit = CHAIN_LIMIT if shape.startswith("S2") else WIDE_LIMIT
            ratio = entry.get("ratio")
            add(f"{system} {shape} <= x{limit:g} floor", ratio, limit,
                "n/a" if ratio is None else f"x{ratio:.2f}" + _cpu_note(entry))
    for shape, entry in times.get("asyncflow-threads", {}).items():
        if not shape.startswith("S5"):
            ratio = entry.get("ratio")
            add(f"asyncflow-threads {shape} <= x{THREAD_LIMIT:g} run_in_executor", ratio,
                THREAD_LIMIT, "n/a" if ratio is None else f"x{ratio:.2f}" + _cpu_note(entry))
    for system in ("asyncflow-onloop", "asyncflow-threads", "asyncflow-threads-async"):
        entry = times.get(system, {}).get("S5-seed")
        if entry and "wall" in entry:
            excess = entry["wall"] - 3.0
            add(f"{system} S5-seed within 20 ms of 3.0 s", abs(excess), SEED_EXCESS_LIMIT,
                f"{entry['wall']:.3f} s ({excess * 1e3:+.0f} ms)")
    for system in ON_LOOP:
        entry = memory.get(system)
        if entry:
            add(f"{system} heap per task in flight <= 2 KiB", entry["peak_per_task"],
                HEAP_PER_TASK_LIMIT, f"{entry['peak_per_task']:.0f} B")
            add(f"{system} back to baseline: heap a second run leaves <= 16 KiB",
                entry["left_second_bytes"], LEFT_LIMIT,
                f"{entry['left_second_bytes'] / KIB:+.1f} KiB")
    if "import" in startup:
        seconds = startup["import"]["median"]
        add("import asyncflow < 80 ms", seconds, IMPORT_LIMIT, f"{seconds * 1e3:.1f} ms")
    return out


def _cpu_note(entry: dict[str, Any]) -> str:
    return f" (CPU x{entry['cpu_ratio']:.2f})" if "cpu_ratio" in entry else ""


# -- rendering -----------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(r) + " |" for r in [header, rule, *rows]]


def _fmt_us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def render(document: dict[str, Any]) -> str:
    info, summary = document["machine"], document["summary"]
    times, systems = summary["times"], list(document["systems"])
    shapes = [s for s in SHAPES if any(s in times.get(sys, {}) for sys in systems)]
    wide = [s for s in shapes if not s.startswith("S5")]
    lines = [
        "# Benchmark run", "",
        f"`{info['command']}` on {info['date']}: Python {info['python']}, {info['platform']}, "
        f"{info['cpus']} CPUs, load average {info['load_before'][0]:.2f} before, "
        f"{info.get('load_after', ['?'])[0]:.2f} after. Medians of "
        f"{max((e.get('reps', 0) for t in times.values() for e in t.values()), default=0)} "
        "repetitions, each in a fresh process; ratios are to the floor measured in this run "
        "(`asyncio` for on-loop systems, `asyncio-threads` for systems that run bodies in "
        "threads).", "",
    ]
    if summary["wrong_values"]:
        lines += ["**WRONG VALUES** (a dependency was dropped or misordered):", ""]
        lines += [f"- {w['system']} {w['shape']}: got {w['values']!r}, expected "
                  f"{w['expected']!r}" for w in summary["wrong_values"]]
        lines.append("")

    def cell(system: str, shape: str, fmt: str) -> str:
        entry = times.get(system, {}).get(shape)
        if not entry:
            return ""
        if "wall" not in entry:
            unavailable = any("UnavailableError" in e for e in entry["errors"])
            return "unavailable" if unavailable else "error"
        mark = " **WRONG**" if entry["wrong"] else ""
        if fmt == "us":
            ratio = f" (x{entry['ratio']:.2f})" if "ratio" in entry else ""
            return f"{_fmt_us(entry['us_per_task'])} µs{ratio}{mark}"
        if fmt == "cpu":
            if not entry.get("cpu"):
                return ""
            ratio = f" (x{entry['cpu_ratio']:.2f})" if "cpu_ratio" in entry else ""
            return f"{_fmt_us(entry['cpu'] / SHAPES[shape].tasks * 1e6)} µs{ratio}"
        return f"{entry['tasks_per_s']:,.0f}{mark}"

    lines += ["## µs per task (x the floor)", ""]
    lines += _table(["system", "floor", *wide],
                    [[s, SYSTEMS[s].floor, *[cell(s, sh, "us") for sh in wide]]
                     for s in systems], "ll" + "r" * len(wide))
    lines += ["", "Chain: µs per task = latency per dependency level. Composite: per task or "
              "block (900 tasks + 100 blocks).", "",
              "## CPU time of the process per task (x the floor's)", ""]
    lines += _table(["system", *wide], [[s, *[cell(s, sh, "cpu") for sh in wide]]
                                        for s in systems])
    lines += ["", "Less sensitive than wall time to other jobs on a shared machine. For systems "
              "with threads it adds up every thread's CPU: work, not latency.", "",
              "## Tasks per second", ""]
    lines += _table(["system", *wide], [[s, *[cell(s, sh, "tps") for sh in wide]]
                                        for s in systems])
    if "S5-seed" in shapes:
        lines += ["", "## S5: the seed's example as written (3 blocks, 0.5 s bodies, ideal "
                  "3.0 s)", ""]
        rows = []
        for s in systems:
            e = times.get(s, {}).get("S5-seed")
            if e and "wall" in e:
                ideal = 3.0 if SYSTEMS[s].runs_bodies else 0.0
                rows.append([s, f"{e['wall']:.3f} s", f"{e['wall_min']:.3f}..{e['wall_max']:.3f}",
                             f"{(e['wall'] - ideal) * 1e3:+.1f} ms"
                             + ("" if ideal else " (bodies not run)")])
        lines += _table(["system", "wall (median)", "min..max", "excess"], rows)
    lines += _memory(summary, systems)
    lines += _startup(summary)
    lines += _soak(summary)
    lines += ["", "## Targets", ""]
    lines += _table(["target", "measured", "met"],
                    [[t["target"], t["shown"], {True: "yes", False: "**no**", None: "n/a"}[
                        t["met"]]] for t in summary["targets"]], "lrl")
    lines += ["", "## Systems", ""]
    lines += [f"- `{name}`: {text}" for name, text in document["systems"].items()]
    return "\n".join(lines) + "\n"


def _memory(summary: dict[str, Any], systems: list[str]) -> list[str]:
    times, memory = summary["times"], summary["memory"]
    shape = next((m["shape"] for m in memory.values()), "S1-indep-10k")
    rows = []
    for s in systems:
        e = times.get(s, {}).get(shape, {})
        m = memory.get(s)
        if "wall" not in e and not m:
            continue
        rows.append([
            s,
            f"{e['peak_rss_kib'] / KIB:.1f} MiB" if "wall" in e else "",
            f"{e['growth_per_task'] / KIB:.2f} KiB" if "wall" in e else "",
            f"{m['peak_per_task'] / KIB:.2f} KiB" if m else "",
            f"{m['left_bytes'] / KIB:.1f} KiB" if m else "",
            f"{m['left_second_bytes'] / KIB:+.1f} KiB" if m else "",
        ])
    if not rows:
        return []
    return ["", f"## Memory ({shape})", "",
            *_table(["system", "peak RSS", "RSS growth per task", "heap per task in flight",
                     "heap left after run 1", "heap left by run 2"], rows),
            "", "RSS: the child's peak resident set (VmHWM), and its growth over the RSS before "
            "the shape divided by the tasks. Heap: tracemalloc, in separate processes that run "
            "the shape twice: the first run's peak over the baseline per task (tasks in flight, "
            "tables growing included); what the first run leaves (the capacity of dicts and "
            "sets, which do not shrink, in asyncio as in the engine); and what the second run "
            "adds on top of that, which is what finished tasks leave behind."]


def _startup(summary: dict[str, Any]) -> list[str]:
    startup = summary["startup"]
    if not startup:
        return []
    rows = []
    if "import" in startup:
        i = startup["import"]
        rows.append(["`import asyncflow`", f"{i['median'] * 1e3:.1f} ms",
                     f"{i['min'] * 1e3:.1f}..{i['max'] * 1e3:.1f} ms"])
    for backend in ("noop", "default"):
        if backend in startup:
            b = startup[backend]
            what = "create(backend='noop')" if backend == "noop" else \
                f"create() (default: {b['backend']})"
            rows.append([f"`{what}` first / again", f"{b['create_cold'] * 1e3:.1f} ms / "
                         f"{b['create_warm'] * 1e3:.1f} ms", ""])
            rows.append(["`shutdown()` first / again", f"{b['shutdown_cold'] * 1e3:.1f} ms / "
                         f"{b['shutdown_warm'] * 1e3:.1f} ms", ""])
    return ["", "## Startup", "", *_table(["what", "median", "min..max"], rows),
            "", "The first `create()` builds the plugin registry (entry points are read once "
            "per process)."]


def _soak(summary: dict[str, Any]) -> list[str]:
    soak = summary["soak"]
    if not soak:
        return []
    lines = ["", "## Soak: RSS after each batch of no-op tasks", ""]
    rows = []
    for system, result in soak.items():
        if "rows" not in result:
            rows.append([system, result.get("error", "?"), "", "", "", ""])
            continue
        batches = result["rows"][1:]
        rss = [b["rss_kib"] for b in batches]
        half = rss[len(rss) // 2:]
        drift = (half[-1] - half[0]) / max(len(half) - 1, 1)
        records = batches[-1].get("records")
        objects = [b.get("objects", 0) for b in batches]
        rows.append([system, f"{batches[-1]['tasks']:,}", f"{rss[0] / KIB:.1f} MiB",
                     f"{max(rss) / KIB:.1f} MiB", f"{rss[-1] / KIB:.1f} MiB",
                     f"{drift:+.1f} KiB", f"{objects[0]:,} / {objects[-1]:,}",
                     f"{batches[-1]['seconds']:.0f} s",
                     "" if records is None else str(records)])
    lines += _table(["system", "tasks", "RSS after batch 1", "max", "last",
                     "RSS drift per batch (2nd half)", "live objects after batch 1 / last",
                     "time", "records left"], rows)
    lines += ["", "Live objects: what the garbage collector tracks once a batch is over; flat "
              "means finished tasks leave nothing behind. RSS also holds freed memory the "
              "allocator keeps (fragmentation), so it may creep while the objects do not."]
    return lines
