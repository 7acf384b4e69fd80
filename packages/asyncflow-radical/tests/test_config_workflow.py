"""A pilot of its own, chosen by name in asyncflow.toml: the seed's composite workflow runs
on it, a pilot that ends fails its tasks, and shutdown leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import OPTIONS, group_processes

from asyncflow import WorkerLostError, WorkflowEngine
from asyncflow_radical import RadicalExecutionBackend


def seed_workflow(flow: WorkflowEngine) -> tuple[object, object]:
    """The seed's "Composite Workflows" page: three-task workflows inside blocks."""

    @flow.function_task
    async def task1(name: str) -> tuple[float, float]:
        start = time.time()
        await asyncio.sleep(0.5)  # simulate work
        return start, time.time()

    @flow.function_task
    async def task2(name: str) -> tuple[float, float]:
        start = time.time()
        await asyncio.sleep(0.5)
        return start, time.time()

    @flow.function_task
    async def task3(name: str, *upstream: tuple[float, float]) -> tuple[float, float]:
        start = time.time()
        await asyncio.sleep(0.5)
        return start, max(end for _, end in upstream)  # when it started, when inputs ended

    async def create_workflow(name: str) -> tuple[float, float]:
        t1 = task1("task1")
        t2 = task2("task2")
        return await task3("task3", t1, t2)

    @flow.block
    async def create_block(name: str, *after: object) -> tuple[float, float, list[Any]]:
        began = time.time()
        workflows = [await create_workflow(f"WF{i}") for i in (1, 2, 3)]
        return began, time.time(), workflows

    return create_block, create_workflow


async def test_seed_workflow_from_config_then_pilot_loss_then_no_leftovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = "\n".join(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
                        for key, value in OPTIONS.items())
    config = f'backend = "radical"\n[backends.radical]\n{options}\n'
    (tmp_path / "asyncflow.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    before = group_processes()  # the session's pilot

    flow = await WorkflowEngine.create()  # no backend named here: the file decides
    ours = group_processes() - before
    try:
        assert isinstance(flow.backend, RadicalExecutionBackend)
        assert flow.backend.resource == OPTIONS["resource"]

        create_block, _ = seed_workflow(flow)
        a, b = create_block("Block A"), create_block("Block B")
        c = create_block("Block C", a, b)  # the DAG variant: C after A and B
        runs = await asyncio.gather(a, b, c)
        for _, _, workflows in runs:
            assert len(workflows) == 3
            for started, inputs_done in workflows:
                assert started >= inputs_done  # task3 ran after task1 and task2
        (_, a_ended, _), (b_began, b_ended, _), (c_began, _, _) = runs
        assert c_began >= max(a_ended, b_ended)
        assert b_began < a_ended  # A and B ran side by side

        # The pilot's agent stops (as when its runtime is up, or its job is killed by the batch
        # system): the task in flight fails, saying so, and nothing hangs.
        fifo = tmp_path / "started"
        os.mkfifo(fifo)

        @flow.executable_task
        def wait() -> str:
            return f"sh -c 'echo > {fifo}; exec sleep 600'"

        future = wait()
        await asyncio.to_thread(_read, fifo)  # the command runs
        agents = [p for p in ours  # the agent, not a zombie child that inherited its title
                  if p.info["name"] == "rp.agent.0" and p.status() != psutil.STATUS_ZOMBIE]
        assert len(agents) == 1, sorted(p.info["name"] for p in ours)
        agents[0].send_signal(signal.SIGTERM)
        with pytest.raises(WorkerLostError, match="pilot"):
            await future
        with pytest.raises(WorkerLostError, match="pilot"):  # and later work fails at once
            await flow.executable_task(lambda: "true")()
    finally:
        await flow.shutdown()

    _, alive = await asyncio.to_thread(psutil.wait_procs, group_processes() - before, timeout=30)
    left = set(alive) & group_processes()  # one that went to a session of its own is a task
    assert not left, f"left behind by shutdown: {[(p.pid, p.info['name']) for p in left]}"


def _read(path: Path) -> str:
    return path.read_text()
