"""A workflow script that forgets shutdown(): it starts a task that would sleep 300 s and
a 300 s command, then returns or raises. Run by test_exit.py in a child process:

    python exit_script.py <backend> <options as JSON> <fifo> return|raise
"""

import asyncio
import json
import sys
from pathlib import Path

from asyncflow import WorkflowEngine


async def main(backend: str, options: dict[str, object], fifo: str, ending: str) -> None:
    flow = await WorkflowEngine.create(backend=backend, **options)

    @flow.function_task
    async def sleepy(fifo: str) -> None:
        await asyncio.to_thread(Path(fifo).write_text, "started")  # unblocks the reader
        await asyncio.sleep(300)

    @flow.executable_task
    async def sleeper() -> str:
        return "sleep 300"

    sleeper()
    sleepy(fifo)
    if backend != "noop":  # noop runs nothing
        await asyncio.to_thread(Path(fifo).read_text)  # the body runs
    if ending == "raise":
        raise RuntimeError("the script failed")


if __name__ == "__main__":  # worker processes (spawned) import this file too
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]))
