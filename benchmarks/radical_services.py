"""How soon a service task on the radical backend is ready, and how soon it stops.

    bash packages/asyncflow-radical/tests/contained.sh benchmarks/radical_services.py [--rounds 5]

One pilot (4 cores; ``ci.localhost`` under contained.sh, else ``local.localhost``). After two
warm-up tasks, each round measures a plain ``echo`` task (submit to DONE, for comparison), a
service ready on its output line, on a port and on a file (submit to ready: the future's
result), and ``flow.stop_service`` of the first (call to return: the task's final state).
Then three services at once, and the shutdown with them running (pilot included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import statistics
import sys
import time
from collections.abc import Awaitable
from typing import Any

from asyncflow import WorkflowEngine

SLEEPER = "import time; time.sleep(600)"


def python(code: str) -> str:
    return shlex.join([sys.executable, "-u", "-c", code])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed(awaitable: Awaitable[Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = await awaitable
    return time.perf_counter() - start, value


async def main(rounds: int) -> None:
    resource = os.environ.get("ASYNCFLOW_RADICAL_TEST_RESOURCE", "local.localhost")
    start = time.perf_counter()
    async with WorkflowEngine.create("radical", resource=resource, cores=4) as flow:
        print(f"engine and pilot up: {time.perf_counter() - start:.1f} s", flush=True)

        @flow.executable_task(service=True)
        def serve(command: str) -> str:
            return command

        @flow.executable_task
        def echo() -> str:
            return "echo hi"

        for _ in range(2):
            await echo()
        times: dict[str, list[float]] = {k: [] for k in (
            "echo task, submit -> DONE", "ready_line, submit -> ready",
            "ready_port, submit -> ready", "ready_file, submit -> ready",
            "stop_service -> stopped")}
        for _ in range(rounds):
            times["echo task, submit -> DONE"].append((await timed(echo()))[0])
            line = serve(python(f"print('up', flush=True); {SLEEPER}"),
                         task_description={"ready_line": "^up$"})
            times["ready_line, submit -> ready"].append((await timed(line))[0])
            times["stop_service -> stopped"].append((await timed(flow.stop_service(line)))[0])
            port = free_port()
            listener = serve(python(f"import socket; s = socket.socket(); s.bind(('127.0.0.1',"
                                    f" {port})); s.listen(); {SLEEPER}"),
                             task_description={"ready_port": port})
            times["ready_port, submit -> ready"].append((await timed(listener))[0])
            flag = serve(python(f"import pathlib; pathlib.Path('flag').touch(); {SLEEPER}"),
                         task_description={"ready_file": "flag"})
            times["ready_file, submit -> ready"].append((await timed(flag))[0])
            await asyncio.gather(flow.stop_service(listener), flow.stop_service(flag))
        for what, values in times.items():
            print(f"{what:30s} median {statistics.median(values):.2f} s, min "
                  f"{min(values):.2f}, max {max(values):.2f} (n={len(values)})", flush=True)
        three = [serve(python(f"print('up', flush=True); {SLEEPER}"),
                       task_description={"ready_line": "^up$"}) for _ in range(3)]
        elapsed, _ = await timed(asyncio.gather(*three))
        print(f"3 services at once, all ready: {elapsed:.2f} s", flush=True)
        start = time.perf_counter()
    print(f"shutdown with 3 services running, pilot included: "
          f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
