"""Worker processes that die mid-task, on LocalClusters of their own (the kills would disturb
the shared one)."""

from __future__ import annotations

import os
import signal

import dask_bodies as bodies
import pytest
from dask_support import Inbox

from asyncflow import WorkflowEngine
from asyncflow.errors import WorkerLostError
from asyncflow_dask import DaskExecutionBackend


async def test_dask_reruns_a_task_whose_worker_died_on_another_worker(inbox: Inbox) -> None:
    # Dask's default allowed-failures (3) lets the scheduler rerun the task by itself.
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1)
    async with await WorkflowEngine.create(backend=backend) as flow:
        victim = flow.function_task(bodies.pid_through_gate)(inbox.address, "victim")
        _, first = await inbox.next()
        os.kill(first, signal.SIGKILL)
        _, second = await inbox.next()
        assert second != first
        inbox.open_gate()
        assert await victim == second
        assert victim.state == "DONE"


async def test_killed_worker_fails_the_task_and_engine_retries_rerun_it(inbox: Inbox) -> None:
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1,
                                   dask_config={"distributed.scheduler.allowed-failures": 0})
    async with await WorkflowEngine.create(backend=backend) as flow:
        body = bodies.pid_through_gate
        once = flow.function_task(body)(inbox.address, "once")
        _, pid = await inbox.next()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError) as lost:
            await once
        message = str(lost.value)
        assert f"task 'pid_through_gate' ({once.uid}, attempt 1): the Dask worker " \
               "tcp://127.0.0.1:" in message
        assert "died while running it; Dask ran it on 1 worker, and each died (its " \
               "distributed.scheduler.allowed-failures is 0)" in message

        twice = flow.function_task(retries=1)(body)(inbox.address, "twice")
        _, pid = await inbox.next()
        os.kill(pid, signal.SIGKILL)
        _, again = await inbox.next()
        assert again != pid
        inbox.open_gate()
        assert await twice == again  # the engine's second attempt, on a live worker


async def test_a_result_lost_with_its_worker_is_recomputed_for_a_dependent(
        inbox: Inbox) -> None:
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1)
    async with await WorkflowEngine.create(backend=backend) as flow:
        upstream = flow.function_task(bodies.report)(inbox.address, "upstream")
        holder = await upstream  # its value stays on that worker too, for dependents
        _, pid = await inbox.next()
        assert pid == holder
        os.kill(holder, signal.SIGKILL)
        # The dependent needs the upstream's data, gone with its worker: Dask runs the
        # upstream again (it reports once more), then the dependent, which sees the new run's
        # result (here another pid: a body whose result varies gives a different value).
        dependent = flow.function_task(bodies.echo_pid)(upstream)
        _, again = await inbox.next()
        assert again != holder
        assert await dependent == again
        assert upstream.result() == holder  # the engine's future keeps the first value
