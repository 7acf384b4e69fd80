"""Seeing and surviving a run: the seed's three composite blocks, with a flaky analysis step
that retries with backoff, one simulation that fails for good, a journal, and resume.

    asyncflow run examples/observability.py --journal          # live progress on a terminal
    asyncflow report asyncflow.session.<uid> --png timeline.png
    asyncflow run examples/observability.py --resume           # completed tasks do not rerun
    asyncflow run examples/observability.py --backend noop --dag plan.mmd   # the plan only
"""

import asyncio
import random

from asyncflow import WorkflowEngine, current_attempt


async def main():
    flow = await WorkflowEngine.create()  # the backend, journal, progress: from the config

    @flow.function_task
    async def prepare(block: str, step: int):
        await asyncio.sleep(0.3)
        return f"{block}{step}"

    @flow.function_task
    async def simulate(data: str):
        await asyncio.sleep(random.uniform(0.4, 0.9))
        if data == "C2":
            raise RuntimeError(f"simulation of {data} diverged")
        return f"sim({data})"

    @flow.function_task(retries=2, retry_backoff=0.2, retry_on=ConnectionError)
    async def analyse(result: str):
        await asyncio.sleep(0.2)
        if result.endswith("1)") and current_attempt() == 1:
            raise ConnectionError("the analysis store did not answer")
        return f"analysed {result}"

    @flow.block
    async def composite(name: str, *after):
        return [await analyse(simulate(prepare(name, step))) for step in (1, 2, 3)]

    a = composite("A")
    b = composite("B")
    c = composite("C", a, b)
    for outcome in await asyncio.gather(a, b, c, return_exceptions=True):
        print(outcome)
    await flow.shutdown()


asyncio.run(main())
