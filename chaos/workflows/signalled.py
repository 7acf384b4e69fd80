"""A workflow the signal scenario runs in a child process and interrupts: long executables
and process tasks in flight, short ones streaming; one line per completed short task."""

import asyncio
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def main() -> None:
    backend = ConcurrentExecutionBackend(ProcessPoolExecutor(2))
    async with await WorkflowEngine.create(backend=backend) as flow:
        @flow.executable_task
        async def sleep(seconds: float) -> str:
            return f"sleep {seconds}"

        work = flow.function_task(slow)
        long = [sleep(300), sleep(300), work(300)]  # noqa: F841 (in flight when signalled)
        for i in range(10_000):
            await asyncio.gather(sleep(0.01), work(0.01))
            print("done", i, flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
