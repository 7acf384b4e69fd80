"""Worker processes that die mid-task, on LocalClusters of their own (the kills would disturb
the shared one)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import dask_bodies as bodies
import pytest
from dask_support import WITHIN, Inbox

from asyncflow import TaskState, WorkflowEngine
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


def _lost_only() -> dict[str, object]:
    # A task whose worker dies fails at once (WorkerLostError), for the engine's retries=.
    return {"distributed.scheduler.allowed-failures": 0}


def _others() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def test_both_workers_killed_one_after_the_other_every_task_still_settles() -> None:
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1, dask_config=_lost_only())
    async with await WorkflowEngine.create(backend=backend) as flow:
        pids = list((await backend.client.run(os.getpid)).values())
        body = flow.function_task(retries=3)(bodies.sleep)
        futures = [body(0.01) for _ in range(300)]
        done = 0

        def count(_: object) -> None:
            nonlocal done
            done += 1
            if done == 50:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)

        for future in futures:
            future.add_done_callback(count)
        _, pending = await asyncio.wait(futures, timeout=4 * WITHIN)
        assert not pending, f"{len(pending)} of 300 futures never settled: {flow.counts()}"
        assert [f.result() for f in futures] == ["slept"] * 300
    assert not _others(), f"the shutdown left asyncio tasks pending: {_others()}"


async def test_a_shutdown_after_both_workers_died_settles_everything_and_leaves_no_task(
        inbox: Inbox, caplog: pytest.LogCaptureFixture) -> None:
    backend = DaskExecutionBackend(n_workers=2, threads_per_worker=1, dask_config=_lost_only())
    flow = await WorkflowEngine.create(backend=backend)
    pids = list((await backend.client.run(os.getpid)).values())
    # async def bodies: cancelling one asks its worker to stop it
    body = flow.function_task(retries=3)(bodies.report_then_sleep_async)
    futures = [body(inbox.address, f"nap-{i}", 60) for i in range(200)]
    await inbox.next()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="asyncflow"):
        await asyncio.wait_for(flow.shutdown(), 2 * flow.shutdown_timeout + WITHIN)
    # Cancelling a task never waits for the cluster: the engine finds no cancel unfinished,
    # and the backend no release it could not make.
    complaints = [r.getMessage() for r in caplog.records if r.name.startswith("asyncflow")]
    assert not complaints, complaints
    assert {f.state for f in futures} == {TaskState.CANCELLED}
    assert not _others(), f"the shutdown left asyncio tasks pending: {_others()}"
