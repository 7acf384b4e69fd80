"""Pilots that the batch system ends: one removed with scancel, one past its walltime.

Both are configured by the docs' example with one node each (so they run side by side on
the two-node cluster); the second has a walltime of two minutes. Each fails its task in flight with
WorkerLostError naming the pilot and its Slurm job; retries= then fails at once, as no pilot
is left; shutdown leaves no job in squeue and no RADICAL-Pilot process.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest
from conftest import group_processes
from slurm import CONFIG, job_id, line_from, scancel, squeue

from asyncflow import WorkerLostError, WorkflowEngine
from asyncflow_radical import RadicalExecutionBackend


@pytest.mark.timeout(600)  # two pilots start side by side (~30-90 s) and one waits out its walltime
async def test_scancel_and_walltime_fail_tasks_in_flight_then_nothing_is_left(
        tmp_path: Path) -> None:
    configs = []
    for name, runtime in (("cancelled", 10), ("timed", 2)):  # one node each
        configs.append(tmp_path / f"{name}.toml")
        configs[-1].write_text(CONFIG.read_text().replace("nodes = 2 ", "nodes = 1 ")
                               .replace("runtime = 10 ", f"runtime = {runtime} "))
    before = group_processes()
    began = time.monotonic()
    # Side by side, started at once (one session at a time is created, then both pilots wait
    # in the queue together); whichever started is shut down whatever happens.
    started = await asyncio.gather(*(WorkflowEngine.create(config=config, work_dir=tmp_path)
                                     for config in configs), return_exceptions=True)
    flows = [flow for flow in started if isinstance(flow, WorkflowEngine)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        backends = [flow.backend for flow in flows]
        assert all(isinstance(b, RadicalExecutionBackend) for b in backends)
        jobs = [job_id(b.batch_job) for b in backends]  # type: ignore[attr-defined]
        print(f"\ntwo pilots active in {time.monotonic() - began:.1f} s: Slurm jobs {jobs}")

        futures = []
        for flow, name in zip(flows, ("cancelled", "timed"), strict=True):
            fifo = tmp_path / f"{name}.started"
            os.mkfifo(fifo)

            @flow.executable_task(retries=2)
            def hold(fifo: Path = fifo) -> str:
                return f"sh -c 'echo > {fifo}; exec sleep 600'"

            futures.append(hold())
            await line_from(fifo, 120)  # running in its pilot's job

        await scancel(jobs[0])
        removed = time.monotonic()
        with pytest.raises(WorkerLostError, match=rf"pilot\.\d+ in Slurm job {jobs[0]} "):
            await asyncio.wait_for(futures[0], 120)
        print(f"scancel -> WorkerLostError in {time.monotonic() - removed:.1f} s")

        with pytest.raises(WorkerLostError, match=rf"pilot\.\d+ in Slurm job {jobs[1]} "):
            await asyncio.wait_for(futures[1], 180)
        print(f"walltime: WorkerLostError {time.monotonic() - began:.1f} s after the start")

        @flows[1].executable_task(retries=3)
        def later() -> str:
            return "true"

        with pytest.raises(WorkerLostError, match="ended"):  # no pilot left: at once
            await asyncio.wait_for(later(), 10)
    finally:
        await asyncio.gather(*(flow.shutdown() for flow in flows))

    assert not [line for line in squeue("--format=%i") if line.strip() in jobs]
    _, alive = await asyncio.to_thread(psutil.wait_procs, group_processes() - before, timeout=30)
    left = set(alive) & group_processes()
    assert not left, f"left behind: {[(p.pid, p.info['name']) for p in left]}"
