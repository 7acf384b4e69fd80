"""Scale: many tasks and a long chain lose and duplicate nothing; memory per task stays flat
over a million tasks. Bodies run on the engine's loop (concurrent backend, loop mode), so the
test counts every run in memory."""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections import Counter

import psutil
import pytest
from conftest import Record

from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend

LIMIT = 600.0  # seconds the largest run may take before the test fails


@pytest.mark.timeout(900)
async def test_many_tasks_and_a_long_chain_lose_and_duplicate_nothing(
        short: bool, record: Record) -> None:
    tasks, chain = (10_000, 1_000) if short else (100_000, 10_000)
    ran: Counter[int] = Counter()
    async with await WorkflowEngine.create(backend=ConcurrentExecutionBackend()) as flow:
        @flow.function_task
        async def square(i: int) -> int:
            ran[i] += 1
            return i * i

        @flow.function_task
        async def step(i: int, previous: int) -> int:
            ran[-i] += 1
            return previous + 1

        futures = [square(i) for i in range(tasks)]
        last = step(1, 0)
        for i in range(2, chain + 1):
            last = step(i, last)
        async with asyncio.timeout(LIMIT):
            results = await asyncio.gather(*futures)
            length = await last
    lost = sum(1 for i, value in enumerate(results) if value != i * i)
    lost += sum(1 for i in [*range(tasks), *range(-chain, 0)] if ran[i] == 0)
    duplicated = sum(1 for count in ran.values() if count > 1)
    scenario = f"{tasks:,} independent tasks + a chain of {chain:,}"
    record(scenario, "lost", lost)
    record(scenario, "duplicated", duplicated)
    assert (lost, duplicated, length) == (0, 0, chain)


@pytest.mark.timeout(900)
async def test_memory_per_task_stays_flat_over_a_million_tasks(
        short: bool, record: Record) -> None:
    # Short batches measure the allocator's noise (about 1 MB a batch) as much as the engine:
    # the short form's bound is looser.
    batches, batch, bound = (10, 20_000, 150) if short else (10, 100_000, 50)
    process = psutil.Process()
    rss = []
    async with await WorkflowEngine.create(backend=ConcurrentExecutionBackend()) as flow:
        @flow.function_task
        async def square(i: int) -> int:
            return i * i

        for _ in range(batches):
            async with asyncio.timeout(LIMIT):
                await asyncio.gather(*(square(i) for i in range(batch)))
            gc.collect()
            rss.append(process.memory_info().rss)
    # The first batch warms the allocator and the engine's tables: the slope is over the rest.
    slope = statistics.linear_regression(range(batches - 1), rss[1:]).slope / batch
    scenario = f"{batches * batch:,} tasks in batches of {batch:,}"
    record(scenario, "RSS slope (bytes per task)", round(slope, 2))
    record(scenario, "RSS after the last batch (MB)", round(rss[-1] / 2**20, 1))
    # Finished tasks are dropped from the engine's tables: what remains is allocator noise.
    record(scenario, "bound (bytes per task)", bound)
    assert slope < bound, f"RSS grows {slope:.1f} bytes per task: {rss}"
