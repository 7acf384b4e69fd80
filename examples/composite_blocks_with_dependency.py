"""The seed's "Blocks with Dependency" example, as written: Block C depends on Blocks A and B,
which run concurrently; each block is a chain of three workflows of (task1, task2) -> task3.

Every task sleeps 0.5 s, so the critical path is 2 blocks x 3 workflows x 2 levels x 0.5 s
= 6.0 s.

    python examples/composite_blocks_with_dependency.py
"""

# The seed names each workflow it awaits (wf1, wf2, wf3) without using them; kept as written.
# ruff: noqa: F841

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine


async def main():
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor())
    asyncflow = await WorkflowEngine.create(backend=backend)

    @asyncflow.function_task
    async def task1(name: str):
        now = time.time()
        print(f"[{now:.2f}] {name} started")
        await asyncio.sleep(0.5)  # simulate work
        print(f"[{time.time():.2f}] {name} completed")
        return now

    @asyncflow.function_task
    async def task2(name: str):
        now = time.time()
        print(f"[{now:.2f}] {name} started")
        await asyncio.sleep(0.5)  # simulate work
        print(f"[{time.time():.2f}] {name} completed")
        return now

    @asyncflow.function_task
    async def task3(name: str, *args):
        now = time.time()
        print(f"[{now:.2f}] {name} started")
        await asyncio.sleep(0.5)  # simulate work
        print(f"[{time.time():.2f}] {name} completed")
        return now

    async def create_workflow(name):
        now = time.time()
        print(f"[{now:.2f}] {name} started")
        t1 = task1('task1')
        t2 = task2('task2')
        t3 = task3('task3', t1, t2)
        await t3
        print(f"[{time.time():.2f}] {name} completed")

    @asyncflow.block
    async def create_block(name: str, *args):
        wf1 = await create_workflow('WF1')
        wf2 = await create_workflow('WF2')
        wf3 = await create_workflow('WF3')
        print(f"Processing {name} completed at {time.time():.2f}")

    start_time = time.time()
    block1 = create_block("Block A")
    block2 = create_block("Block B")
    block3 = create_block("Block C", block1, block2)
    await block3
    end_time = time.time()
    print(f"\nTotal time running asynchronously is: {end_time - start_time:.2f}s")
    await asyncflow.shutdown()


asyncio.run(main())
