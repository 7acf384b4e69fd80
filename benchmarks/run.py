"""The engine benchmark: this engine next to raw asyncio (the floor) and, optionally, its peers.

    python benchmarks/run.py                  every shape, 3 repetitions, medians
    python benchmarks/run.py --reps 5 --shapes S2-chain-1k --systems asyncio,asyncflow-noop
    python benchmarks/run.py --peers --peer-python .nox/bench-peers/bin/python
    python benchmarks/run.py --soak           + one million no-op tasks in batches
    python benchmarks/run.py --profile cprofile --systems asyncflow-onloop --shapes S1-indep-10k

Each (system, shape, repetition) runs in a fresh process, interleaved repetition -> shape ->
system so that a noisy minute hits every system alike; the report quotes medians and ratios to
the floor measured in the same run. Results go to ``benchmarks/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from shapes import SHAPES  # noqa: E402
from systems import DEFAULT, FLOORS, PEERS, SYSTEMS  # noqa: E402

CHILD = str(HERE / "child.py")
SCRATCH = tempfile.mkdtemp(prefix="asyncflow-bench-")  # the children's working directory
# The backend packages' own benchmarks, run by --backends when present.
EXTRA = ("concurrent_overhead.py", "dask_overhead.py", "radical_overhead.py",
         "telemetry_overhead.py")


def child(python: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the result."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run([python, CHILD, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=SCRATCH)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    if proc.returncode and "error" in result:
        result["stderr"] = proc.stderr.strip()[-2000:]
    return result


def python_for(system: str, args: argparse.Namespace) -> str | None:
    if SYSTEMS[system].peer:
        return args.peer_python
    return sys.executable


def run_times(args: argparse.Namespace, systems: list[str], shapes: list[str]
              ) -> list[dict[str, Any]]:
    rows = []
    for rep in range(1, args.reps + 1):
        for shape in shapes:
            for system in systems:
                python = python_for(system, args)
                if python is None:
                    continue
                t0 = time.perf_counter()
                result = child(python, "time", system, shape,
                               timeout=SHAPES[shape].timeout + 60)
                rows.append({"kind": "time", "system": system, "shape": shape, "rep": rep,
                             **result})
                status = result.get("error") or f"{result['wall'] * 1e3:9.1f} ms"
                if result.get("ok") is False:
                    status += f"  WRONG VALUE {result.get('value')!r}"
                log(f"rep {rep}/{args.reps} {shape:17} {system:24} {status}"
                    f"  ({time.perf_counter() - t0:.1f} s)")
    return rows


def run_memory(args: argparse.Namespace, systems: list[str]) -> list[dict[str, Any]]:
    rows = []
    for rep in range(1, min(args.reps, 2) + 1):  # allocation counts barely vary; it is slow
        for system in systems:
            python = python_for(system, args)
            if python is None:
                continue
            result = child(python, "memory", system, args.memory_shape, timeout=300)
            rows.append({"kind": "memory", "system": system, "shape": args.memory_shape,
                         "rep": rep, **result})
            if "error" in result:
                log(f"memory {system:24} {result['error']}")
            else:
                log(f"memory {system:24} peak {result['peak_bytes'] / result['tasks']:7.0f} "
                    f"B/task  left {result['left_bytes']:9d} B")
    return rows


def run_startup(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for rep in range(1, args.reps * 2 + 1):  # cheap and noisy: twice the repetitions
        result = child(sys.executable, "import", timeout=60)
        rows.append({"kind": "import", "rep": rep, **result})
        for backend in ("noop", "default"):
            result = child(sys.executable, "create", backend, timeout=120)
            rows.append({"kind": "create", "system": backend, "rep": rep, **result})
    imports = [r["seconds"] for r in rows if r["kind"] == "import" and "seconds" in r]
    if imports:
        log(f"import asyncflow: median {statistics.median(imports) * 1e3:.1f} ms")
    return rows


def run_soak(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for system in args.soak_systems.split(","):
        log(f"soak {system}: {args.soak_batches} batches of {args.soak_size} tasks ...")
        result = child(sys.executable, "soak", system, str(args.soak_batches),
                       str(args.soak_size), timeout=3600)
        rows.append({"kind": "soak", "system": system, **result})
        if "rows" in result:
            first, last = result["rows"][1], result["rows"][-1]
            log(f"soak {system}: RSS {first['rss_kib'] / 1024:.1f} MiB after batch 1, "
                f"{last['rss_kib'] / 1024:.1f} MiB after batch {last['batch']} "
                f"({last['seconds']:.0f} s)")
        else:
            log(f"soak {system}: {result.get('error')}")
    return rows


def run_profile(args: argparse.Namespace, systems: list[str], shapes: list[str]) -> None:
    out = Path(args.out) / "profiles"
    out.mkdir(parents=True, exist_ok=True)
    for system in systems:
        for shape in shapes:
            path = out / f"{system}-{shape}-{args.profile}.txt"
            result = child(sys.executable, "profile", system, shape, args.profile, str(path),
                           timeout=600)
            log(f"profile {system} {shape}: {result.get('error') or path}")


def run_extra(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The backend packages' own overhead benchmarks, when they exist."""
    rows = []
    for script in EXTRA:
        path = HERE / script
        if not path.exists():
            continue
        command = [sys.executable, str(path), "--reps", str(args.reps)]
        if script == "radical_overhead.py":  # pilots run contained: own session, temp HOME
            contained = HERE.parent / "packages/asyncflow-radical/tests/contained.sh"
            command = ["bash", str(contained), str(path), "--rounds", str(args.reps)]
        log(f"running {' '.join(command[-3:])} ...")
        proc = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              cwd=HERE.parent)
        rows.append({"kind": "extra", "script": script, "returncode": proc.returncode,
                     "stdout": proc.stdout[-20_000:], "stderr": proc.stderr[-4_000:]})
        print(proc.stdout, flush=True)
        if proc.returncode:
            log(f"{script} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return rows


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument("--systems", default=None,
                        help=f"comma-separated systems (default {','.join(DEFAULT)}; "
                             f"all: {','.join(SYSTEMS)})")
    parser.add_argument("--peers", action="store_true",
                        help=f"also run {', '.join(PEERS)} (needs --peer-python)")
    parser.add_argument("--peer-python", default=None,
                        help="interpreter of a venv with the peers installed")
    parser.add_argument("--memory-shape", default="S1-indep-10k")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--no-startup", action="store_true", help="skip import/create timing")
    parser.add_argument("--soak", action="store_true",
                        help="one million no-op tasks in batches; reports RSS per batch")
    parser.add_argument("--soak-batches", type=int, default=100)
    parser.add_argument("--soak-size", type=int, default=10_000)
    parser.add_argument("--soak-systems", default="asyncio,asyncflow-noop,asyncflow-onloop")
    parser.add_argument("--backends", action="store_true",
                        help=f"also run the backend packages' overhead benchmarks "
                             f"({', '.join(EXTRA)}, those present)")
    parser.add_argument("--profile", choices=("cprofile", "pyinstrument"), default=None,
                        help="profile the chosen systems and shapes instead of timing them")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    if args.peers and not args.peer_python:
        parser.error("--peers needs --peer-python (nox -s bench -- --peers sets it up)")
    if args.peer_python:  # absolute, not resolved: a venv's python is a symlink out of it
        args.peer_python = os.path.abspath(args.peer_python)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    shapes = args.shapes.split(",")
    systems = args.systems.split(",") if args.systems else list(DEFAULT)
    if args.peers:
        systems += [p for p in PEERS if p not in systems]
    for name in shapes:
        if name not in SHAPES:
            raise SystemExit(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    for name in systems:
        if name not in SYSTEMS:
            raise SystemExit(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    if args.profile:
        run_profile(args, [s for s in systems if s not in FLOORS], shapes)
        return 0
    # Every ratio needs its floor in the same run.
    floors = [f for f in FLOORS if any(SYSTEMS[s].floor == f for s in systems)]
    systems = floors + [s for s in systems if s not in floors]

    info = machine()
    log(f"{info['date']}  load {info['load_before']}  {info['command']}")
    rows = run_times(args, systems, shapes)
    if not args.no_memory:  # peers too slow under tracemalloc (radical-local: minutes)
        rows += run_memory(args, [s for s in systems if not SYSTEMS[s].peer])
    if not args.no_startup:
        rows += run_startup(args)
    if args.soak:
        rows += run_soak(args)
    if args.backends:
        rows += run_extra(args)
    info["load_after"] = os.getloadavg()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary = report.summarize(rows, systems, shapes)
    document = {"machine": info, "systems": {s: SYSTEMS[s].description for s in systems},
                "summary": summary, "rows": rows}
    for path in (out / f"bench-{stamp}.json", out / "latest.json"):
        path.write_text(json.dumps(document, indent=1, default=str))
    text = report.render(document)
    (out / "latest.md").write_text(text)
    print(text)
    log(f"wrote {out / f'bench-{stamp}.json'} and {out / 'latest.md'}")
    return 1 if summary["wrong_values"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
