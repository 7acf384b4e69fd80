"""A journaled workflow the resume scenario kills and resumes: 2,000 small tasks whose every
run appends its number to ran.<pid>.txt; one line on stdout per completed task."""

import asyncio
import os
import sys
import time

from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend

WORK, SIDE, COUNT = sys.argv[1], sys.argv[2], int(sys.argv[3])


def step(i: int) -> int:
    with open(os.path.join(SIDE, f"ran.{os.getpid()}.txt"), "a") as ran:
        ran.write(f"{i}\n")
    time.sleep(0.002)  # simulated work
    return i * i


async def main() -> None:
    flow = await WorkflowEngine.create(backend=ConcurrentExecutionBackend(), work_dir=WORK,
                                       uid="killed", resume=True)
    task = flow.function_task(step)
    futures = [task(i) for i in range(COUNT)]
    for future in asyncio.as_completed(futures):
        await future
        print("done", flush=True)
    await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
