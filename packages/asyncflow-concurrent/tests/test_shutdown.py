"""Shutdown with work in flight: every future settles, no child process outlives it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from concurrent_support import LIMIT, StateWatch, fifo, receive, release, send_pid_then_work

from asyncflow import WorkflowEngine
from asyncflow.testing.processes import alive, children


async def test_shutdown_cancels_everything_and_leaves_no_child(
        flow: WorkflowEngine, watch: StateWatch, mode: str, tmp_path: Path) -> None:
    before = children()
    release = threading.Event()  # for a plain body in a thread, which nothing can stop

    @flow.function_task
    async def sleeper() -> None:
        await asyncio.sleep(3600)

    @flow.function_task
    def blocker(pipe: str, seconds: float) -> None:
        release.wait(LIMIT)

    @flow.executable_task
    def command(pipe: str) -> str:
        return f"sh -c 'echo $$ > {pipe}; exec sleep 3600'"

    pipe, command_pipe = fifo(tmp_path / "pid"), fifo(tmp_path / "command")
    if mode == "processes":  # the worker tells the test its pid, then works
        blocker = flow.function_task(send_pid_then_work)
    running = [blocker(pipe, 3600), sleeper(), command(command_pipe)]
    waiting = [flow.function_task(abs)(task) for task in running]
    worker = int(await receive(pipe)) if mode == "processes" else None
    sleep = int(await receive(command_pipe))
    for task in running:
        await watch.reached(task)
    assert alive(sleep) and sleep in children()

    await flow.shutdown()
    release.set()
    assert all(f.cancelled() for f in [*running, *waiting])
    left = {pid: cmd for pid, cmd in children().items() if pid not in before}
    assert not left, f"still running after shutdown: {left}"
    assert not alive(sleep) and (worker is None or not alive(worker))


INTERRUPTED = """
import asyncio, sys, time
import asyncflow
from asyncflow import WorkflowEngine
from concurrent_support import make_backend

class Ready:
    running = 0

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task, new):
        if new == "RUNNING":
            Ready.running += 1
            if Ready.running == 21:
                print("running", flush=True)

asyncflow.register(Ready())

async def main():
    async with WorkflowEngine.create(backend=make_backend(sys.argv[1])) as flow:
        @flow.executable_task
        async def sleeper(i: int) -> str:
            return "sleep 3600"

        async def wait() -> None:
            await asyncio.sleep(3600)

        def block() -> None:  # in a worker process: what the group's SIGINT lands in
            time.sleep(3600)

        hold = flow.function_task(block if sys.argv[1] == "processes" else wait)

        await asyncio.gather(hold(), *(sleeper(i) for i in range(20)))

asyncio.run(main())
"""


@pytest.mark.parametrize("to", ["process", "group"])
async def test_sigint_during_executables_ends_quietly(mode: str, to: str) -> None:
    # Issue 15: after the KeyboardInterrupt, nothing about destroyed tasks or a closed loop.
    # Ctrl-C in a terminal signals the whole process group: the pool's workers too.
    tests = Path(__file__).parent
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", INTERRUPTED, mode, cwd=tests, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(tests)},
        start_new_session=True)
    try:
        assert child.stdout is not None and child.stderr is not None
        assert await asyncio.wait_for(child.stdout.readline(), LIMIT) == b"running\n"
        if to == "group":
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGINT)
        err = (await asyncio.wait_for(child.stderr.read(), LIMIT)).decode()
        assert await asyncio.wait_for(child.wait(), LIMIT) != 0
    finally:
        if child.returncode is None:  # never leave it behind
            child.kill()
            await child.wait()
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    for noise in ("Task was destroyed", "Event loop is closed", "never retrieved",
                  "Exception ignored", "TaskExitError", "Process ForkProcess"):
        assert noise not in err, err


@pytest.mark.parametrize("mode", ["processes"])
async def test_a_sigint_that_reaches_a_worker_leaves_its_body_alone(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    # Ctrl-C signals the process group, workers too; what it means is the engine's to decide.
    @flow.function_task
    def body(pid_pipe: str, go_pipe: str) -> str:
        with open(pid_pipe, "w") as pid:
            pid.write(str(os.getpid()))
        with open(go_pipe) as go:
            return go.read()

    pid_pipe, go_pipe = fifo(tmp_path / "pid"), fifo(tmp_path / "go")
    task = body(pid_pipe, go_pipe)
    worker = int(await receive(pid_pipe))
    for _ in range(2):
        os.kill(worker, signal.SIGINT)
    await release(go_pipe, "went on")
    assert await asyncio.wait_for(task, LIMIT) == "went on"
