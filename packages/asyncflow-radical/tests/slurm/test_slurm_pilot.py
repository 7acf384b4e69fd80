"""RADICAL-Pilot on a two-node Slurm cluster: one pilot for this module, a batch job of two
nodes submitted with sbatch, configured by the docs' example and chosen there by name.

The cluster has 2 cores per node and the pilot all 4; RAPTOR (started by the first function
task) keeps 3 of them, so the tests that need the whole pilot come first, in file order, and
the services (one core each, until stopped) last.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm import CONFIG, assert_ended, job_id, line_from, lines_from, squeue

from asyncflow import InputFile, OutputFile, ServiceEndpoint, TaskTimeoutError, WorkflowEngine
from asyncflow_radical import RadicalExecutionBackend


@pytest.fixture(scope="module")
def pilot() -> Iterator[RadicalExecutionBackend]:
    """The module's pilot, started from the docs' asyncflow.toml on a loop of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="slurm-pilot", daemon=True)
    thread.start()

    def run(coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    async def create() -> WorkflowEngine:
        return await WorkflowEngine.create(config=CONFIG)

    began = time.monotonic()
    engine: WorkflowEngine = run(create(), 300)
    try:
        backend = engine.backend
        assert isinstance(backend, RadicalExecutionBackend)
        print(f"\npilot active in {time.monotonic() - began:.1f} s, {backend.batch_job}")
        yield backend
    finally:
        run(engine.shutdown(), 180)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
async def flow(pilot: RadicalExecutionBackend, tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    engine = await WorkflowEngine.create(backend=pilot.share(), work_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.shutdown()


def test_the_pilot_is_one_batch_job_of_two_nodes(pilot: RadicalExecutionBackend) -> None:
    job = job_id(pilot.batch_job)
    assert squeue("--jobs", job, "--format=%T %D %N") == ["RUNNING 2 node[1-2]"]


async def test_ranks_run_on_both_nodes(flow: WorkflowEngine) -> None:
    @flow.executable_task(task_description={"ranks": 4})
    def where() -> str:
        return "sh -c 'echo $SLURM_PROCID $SLURMD_NODENAME'"

    ranks = dict(line.split() for line in (await where()).splitlines())
    print(f"ranks: {ranks}")
    assert sorted(ranks) == ["0", "1", "2", "3"]
    assert set(ranks.values()) == {"node1", "node2"}


async def test_cores_per_rank_pre_exec_and_environment(flow: WorkflowEngine) -> None:
    @flow.executable_task(task_description={"cores_per_rank": 2,
                                            "pre_exec": ["export FROM_PRE_EXEC=yes"]})
    def show() -> str:
        return "sh -c 'echo $SLURM_CPUS_PER_TASK $FROM_PRE_EXEC $GREETING'"

    assert (await show(task_description={"environment": {"GREETING": "hello"}})).split() == [
        "2", "yes", "hello"]


async def test_files_move_from_one_task_to_the_next(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def write(out: OutputFile) -> str:
        return f"sh -c 'echo written on $SLURMD_NODENAME > {out}'"

    @flow.executable_task
    def read(made: InputFile, _after: object) -> str:
        return f"cat {made}"

    text = await read(InputFile("data.txt"), write(OutputFile("data.txt")))
    assert text.startswith("written on node")


# RADICAL-Pilot's own cancel of an srun task left its command running, outside the step
# (it ignores the SIGINT srun passes on): these tests check the very processes are gone.

async def test_a_running_srun_step_is_cancelled_and_its_processes_end(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)

    @flow.executable_task(task_description={"ranks": 4})
    def hold() -> str:  # every core of the pilot, until cancelled
        return f"sh -c 'echo $$ > {fifo}; exec sleep 600'"

    future = hold()
    ranks = await lines_from(fifo, 4, 120)  # the pids of its 4 ranks, all running
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    await assert_ended(ranks, 30)
    await _all_cores_free(flow)


async def test_a_timeout_ends_the_srun_step(flow: WorkflowEngine, tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)

    @flow.executable_task(timeout=5, task_description={"ranks": 4})
    def overrun() -> str:
        return f"sh -c 'echo $$ > {fifo}; exec sleep 600'"

    future = overrun()
    ranks = await lines_from(fifo, 4, 120)
    with pytest.raises(TaskTimeoutError, match="timeout of 5 s"):
        await future
    await assert_ended(ranks, 30)
    await _all_cores_free(flow)


async def _all_cores_free(flow: WorkflowEngine) -> None:
    @flow.executable_task(task_description={"ranks": 4})
    def after() -> str:  # runs only once the step has ended and its 4 cores are free again
        return "true"

    await after()


async def test_function_tasks_run_through_raptor_inside_the_batch_job(
        pilot: RadicalExecutionBackend, flow: WorkflowEngine) -> None:
    @flow.function_task
    async def where(i: int) -> tuple[int, str | None, str | None]:
        return i * i, os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURMD_NODENAME")

    results = await asyncio.gather(*(where(i) for i in range(20)))
    assert [square for square, _, _ in results] == [i * i for i in range(20)]
    assert {job for _, job, _ in results} == {job_id(pilot.batch_job)}
    print(f"function tasks ran on {sorted({node for _, _, node in results})}")


async def test_the_seed_composite_workflow(flow: WorkflowEngine) -> None:
    from test_config_workflow import seed_workflow

    create_block, _ = seed_workflow(flow)
    a, b = create_block("Block A"), create_block("Block B")
    c = create_block("Block C", a, b)
    runs = await asyncio.gather(a, b, c)
    (_, a_ended, _), (_, b_ended, _), (c_began, _, _) = runs
    assert c_began >= max(a_ended, b_ended)
    assert all(len(workflows) == 3 for _, _, workflows in runs)


async def test_a_service_in_the_batch_job_serves_tasks_until_stopped(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)

    @flow.executable_task(service=True, task_description={
        "ready_line": r"Serving HTTP on (?P<host>\S+) port (?P<port>\d+)", "ready_timeout": 120})
    def http_server() -> str:
        return (f"sh -c 'echo $$ > {fifo}; "
                f"exec {sys.executable} -u -m http.server 0 --bind 127.0.0.1'")

    @flow.function_task
    def fetch(server: ServiceEndpoint) -> tuple[int, str | None]:
        import urllib.request

        with urllib.request.urlopen(f"http://{server.address}/", timeout=30) as reply:
            return reply.status, os.environ.get("SLURM_JOB_ID")

    # Read from the start: the service's write waits for a reader.
    pid = asyncio.ensure_future(line_from(fifo, 130))
    server = http_server()
    status, job = await fetch(server)
    endpoint = await server
    print(f"service {endpoint.info.get('radical_uid')} at {endpoint.address}: {status}, "
          f"fetched in Slurm job {job}")
    assert status == 200 and job is not None
    assert await flow.stop_service(server)
    await assert_ended([await pid], 30)


async def test_a_service_still_running_at_shutdown_is_ended(
        pilot: RadicalExecutionBackend, tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    engine = await WorkflowEngine.create(backend=pilot.share(), work_dir=tmp_path)
    try:
        @engine.executable_task(service=True, task_description={"ready_line": "^up$",
                                                                "ready_timeout": 120})
        def forever() -> str:
            return f"sh -c 'echo $$ > {fifo}; echo up; exec sleep 600'"

        pid = asyncio.ensure_future(line_from(fifo, 130))
        await forever()
    finally:
        await engine.shutdown()
    await assert_ended([await pid], 30)
