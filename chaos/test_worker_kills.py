"""Worker processes killed with SIGKILL at random moments of a run with ``retries=``: every
task still succeeds. Figures: the tasks that failed, and how long from each kill to the
first result from a worker that replaced the dead one (the backend noticed the loss, and
work goes on)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psutil
import pytest
from chaos_bodies import work
from conftest import Record

from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend

LIMIT = 600.0


async def kill_workers_during(flow: WorkflowEngine, tasks: int, kills: int,
                              seed: int) -> tuple[list[float], list[Any]]:
    """Run ``tasks`` tasks; after random numbers of completions, SIGKILL a worker that ran
    one. Return the kill times and the results."""
    rng = random.Random(seed)
    moments = sorted(rng.sample(range(tasks // 10, tasks // 2), kills))
    killed: list[float] = []
    lags: list[float] = []
    seen: set[int] = set()  # every worker that returned a result
    alive: list[int] = []
    done = 0

    def completed(future: asyncio.Future[tuple[int, int]]) -> None:
        nonlocal done
        done += 1
        if future.cancelled() or future.exception() is not None:
            return
        pid = future.result()[1]
        if pid not in seen:
            seen.add(pid)
            alive.append(pid)
            if len(lags) < len(killed):  # a new worker after a kill
                lags.append(time.monotonic() - killed[len(lags)])
        # A process pool loses every worker with one: keep those still running.
        alive[:] = [pid for pid in alive if psutil.pid_exists(pid)]
        if moments and done >= moments[0] and len(lags) == len(killed) and alive:
            moments.pop(0)
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: the next one
                os.kill(alive.pop(rng.randrange(len(alive))), signal.SIGKILL)
                killed.append(time.monotonic())

    body = flow.function_task(retries=3)(work)
    futures = [body(i, 0.002) for i in range(tasks)]
    for future in futures:
        future.add_done_callback(completed)
    async with asyncio.timeout(LIMIT):
        results = await asyncio.gather(*futures, return_exceptions=True)
    return lags, results


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["process pool", "Dask"])
async def test_workers_killed_at_random_lose_no_task(backend: str, short: bool,
                                                      record: Record) -> None:
    tasks, kills = (1_000, 2) if short else (5_000, 5)
    if backend == "Dask":
        from asyncflow_dask import DaskExecutionBackend

        # allowed-failures 0: a lost task comes back to the engine, whose retries= rerun it.
        chosen: Any = DaskExecutionBackend(
            n_workers=2, threads_per_worker=1,
            dask_config={"distributed.scheduler.allowed-failures": 0})
    else:
        chosen = ConcurrentExecutionBackend(ProcessPoolExecutor(2))
    async with await WorkflowEngine.create(backend=chosen) as flow:
        lags, results = await kill_workers_during(flow, tasks, kills, seed=15)
    failed = [result for result in results if isinstance(result, BaseException)]
    wrong = [r for i, r in enumerate(results) if not failed and r[0] != i]
    scenario = f"{backend} workers: {len(lags)} SIGKILLs during {tasks:,} tasks, retries=3"
    record(scenario, "tasks failed", len(failed))
    if lags:
        record(scenario, "kill to the first result of a new worker, median / max (ms)",
               f"{statistics.median(lags) * 1000:.0f} / {max(lags) * 1000:.0f}")
    assert not failed and not wrong, (failed[:3], wrong[:3])
    assert len(lags) == kills, f"{kills} kills planned, {len(lags)} made and recovered from"
