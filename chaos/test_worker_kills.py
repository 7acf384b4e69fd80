"""Worker processes killed with SIGKILL at random moments of a run with ``retries=``: every
task still succeeds. Figures: the tasks that failed, and how long from each kill to the
engine hearing of it: the first retry (a task the dead worker held failed with
WorkerLostError and went back to PENDING) or the first result of a new worker, whichever
comes first (a worker killed between two tasks fails none)."""

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

import asyncflow
from asyncflow import TaskState, WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend

LIMIT = 240.0  # seconds a run may take: about ten times what it takes on 2 busy cores


class Retries:
    """Plugin: when tasks went back from RUNNING to PENDING, for another attempt."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, old: TaskState, new: TaskState) -> None:
        if old is TaskState.RUNNING and new is TaskState.PENDING:
            self.times.append(time.monotonic())


async def kill_workers_during(flow: WorkflowEngine, tasks: int, seconds: float, kills: int,
                              seed: int) -> tuple[list[float], list[Any]]:
    """Run ``tasks`` tasks of ``seconds`` each; after random numbers of completions, SIGKILL
    a worker that ran one. Return the kill times, when new workers gave their first result,
    and the results."""
    rng = random.Random(seed)
    moments = sorted(rng.sample(range(tasks // 10, tasks // 2), kills))
    killed: list[float] = []
    newcomers: list[float] = []
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
            newcomers.append(time.monotonic())
        # A process pool loses every worker with one: keep those still running.
        alive[:] = [pid for pid in alive if psutil.pid_exists(pid)]
        if moments and done >= moments[0] and alive:
            moments.pop(0)
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: the next one
                os.kill(alive.pop(rng.randrange(len(alive))), signal.SIGKILL)
                killed.append(time.monotonic())

    body = flow.function_task(retries=3)(work)
    futures = [body(i, seconds) for i in range(tasks)]
    for future in futures:
        future.add_done_callback(completed)
    _, pending = await asyncio.wait(futures, timeout=LIMIT)
    assert not pending, f"{len(pending)} futures pending after {LIMIT} s: {list(pending)[:5]}"
    results = [future.result() if not future.exception() else future.exception()
               for future in futures]
    return killed, newcomers, results


def heard(kills: list[float], events: list[float]) -> list[float]:
    """For each kill, the time to the first event after it."""
    return [min((t - kill for t in events if t > kill), default=float("inf"))
            for kill in kills]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["process pool", "Dask"])
async def test_workers_killed_at_random_lose_no_task(backend: str, short: bool,
                                                      record: Record) -> None:
    tasks, kills = (1_000, 2) if short else (5_000, 5)
    seconds = 0.002
    if backend == "Dask":
        from asyncflow_dask import DaskExecutionBackend

        seconds = 0.01  # Dask's own cost per task is about 1-2 ms
        # allowed-failures 0: a lost task comes back to the engine, whose retries= rerun it.
        chosen: Any = DaskExecutionBackend(
            n_workers=2, threads_per_worker=1,
            dask_config={"distributed.scheduler.allowed-failures": 0})
    else:
        chosen = ConcurrentExecutionBackend(ProcessPoolExecutor(2))
    retries = Retries()
    asyncflow.register(retries)
    try:
        async with await WorkflowEngine.create(backend=chosen) as flow:
            killed, newcomers, results = await kill_workers_during(flow, tasks, seconds, kills,
                                                                    seed=15)
    finally:
        asyncflow.plugin_manager().unregister(retries)
    lags = heard(killed, sorted(retries.times + newcomers))
    failed = [result for result in results if isinstance(result, BaseException)]
    wrong = [r for i, r in enumerate(results) if not failed and r[0] != i]
    scenario = (f"{backend} workers: {len(killed)} SIGKILLs during {tasks:,} tasks of "
                f"{seconds * 1000:.0f} ms, retries=3")
    record(scenario, "tasks failed", len(failed))
    if lags:
        record(scenario, "kill to a retry or a new worker's result, median / max (ms)",
               f"{statistics.median(lags) * 1000:.0f} / {max(lags) * 1000:.0f}")
    assert not failed and not wrong, (failed[:3], wrong[:3])
    assert len(killed) == kills, f"{kills} kills planned, {len(killed)} made"
    assert max(lags) < float("inf"), f"no retry and no new worker after a kill: {lags}"
