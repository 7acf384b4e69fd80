"""Dask workers as Slurm batch jobs (dask-jobqueue), on the two-node cluster of
scripts/slurm-cluster.sh: chosen by name in asyncflow.toml, tasks on both nodes, a worker job
removed with scancel survived, or (allowed-failures = 0) failing with WorkerLostError naming
the job, rerun by retries=; shutdown leaves no job in squeue, and so does a script that
returns or raises without shutdown()."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from asyncflow import WorkerLostError, WorkflowEngine
from asyncflow.testing.exits import run_without_shutdown
from asyncflow_dask import DaskExecutionBackend

# The example the docs give for Dask on a Slurm site, exactly as CI runs it.
CONFIG = Path(__file__).parents[4] / "docs" / "examples" / "slurm" / "dask.toml"


def squeue(*args: str) -> list[str]:
    return subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.split()


async def scancel(job: str) -> None:
    await asyncio.to_thread(subprocess.run, ["scancel", job], check=True, timeout=30)


def where(i: int) -> tuple[int, str, str]:
    return i, os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("SLURM_JOB_ID", "?")


def hold(fifo: str) -> str:
    """Say which Slurm job runs it (through a FIFO the test reads), then run until that job
    is removed."""
    with open(fifo, "w") as started:  # opens once the test is reading
        started.write(os.environ["SLURM_JOB_ID"])
    time.sleep(600)
    return "never"


async def started(fifo: Path) -> str:
    """The Slurm job of the next ``hold`` to start."""
    return await asyncio.wait_for(asyncio.to_thread(fifo.read_text), 120)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """asyncflow.toml in the working directory, and a FIFO at ``tmp_path / "fifo"``."""
    (tmp_path / "asyncflow.toml").write_text(CONFIG.read_text())
    os.mkfifo(tmp_path / "fifo")
    monkeypatch.chdir(tmp_path)
    # Worker jobs inherit the environment (sbatch's default): they import this module.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    return tmp_path


@pytest.mark.timeout(300)
async def test_worker_jobs_on_both_nodes_survive_a_scancel(config: Path) -> None:
    began = time.monotonic()
    flow = await WorkflowEngine.create()
    try:
        backend = flow.backend
        assert isinstance(backend, DaskExecutionBackend)
        await backend.client.wait_for_workers(2)
        jobs = squeue("-o", "%i")
        print(f"\ntwo worker jobs ready in {time.monotonic() - began:.1f} s: {jobs}")

        task = flow.function_task(where)
        results = await asyncio.gather(*(task(i) for i in range(40)))
        assert [i for i, _, _ in results] == list(range(40))
        nodes = {node for _, node, _ in results}
        print(f"tasks ran on {sorted(nodes)}, in jobs {sorted({j for _, _, j in results})}")
        assert nodes == {"node1", "node2"}

        held = flow.function_task(hold)(str(config / "fifo"))
        first = await started(config / "fifo")
        await scancel(first)
        second = await started(config / "fifo")  # Dask reran it on the other worker
        assert {first, second} == set(jobs)
        held.cancel()
    finally:
        await flow.shutdown()
    # Every worker job was cancelled (it may still be completing: its processes end).
    assert squeue("--states=PENDING,RUNNING", "-o", "%i") == []


@pytest.mark.timeout(300)
async def test_with_no_failures_allowed_a_lost_job_is_named_and_retries_rerun(
        config: Path) -> None:
    flow = await WorkflowEngine.create(
        dask_config={"distributed.scheduler.allowed-failures": 0})
    try:
        await flow.backend.client.wait_for_workers(2)  # type: ignore[attr-defined]
        held = flow.function_task(hold, retries=1)(str(config / "fifo"))
        first = await started(config / "fifo")
        await scancel(first)
        second = await started(config / "fifo")  # the retry, on the other worker's job
        assert second != first
        await scancel(second)
        with pytest.raises(WorkerLostError, match=rf"\(Slurm job {second}\) died"):
            await asyncio.wait_for(held, 120)
    finally:
        await flow.shutdown()
    assert squeue("--states=PENDING,RUNNING", "-o", "%i") == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_script_without_shutdown_exits_and_leaves_no_worker_job(
        config: Path, ending: str) -> None:
    # The script picks the asyncflow.toml of its working directory: workers as Slurm jobs.
    run_without_shutdown("dask", {}, ending, config, limit=180).check()
    assert squeue("--states=PENDING,RUNNING", "-o", "%i") == []
