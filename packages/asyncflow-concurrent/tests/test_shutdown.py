"""Shutdown with work in flight: every future settles, no child process outlives it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from concurrent_support import LIMIT, StateWatch, alive, children, fifo, receive, send_pid_then_work

from asyncflow import WorkflowEngine


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
import asyncio, sys
import asyncflow
from asyncflow import WorkflowEngine
from concurrent_support import make_backend

class Ready:
    running = 0

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task, new):
        if new == "RUNNING":
            Ready.running += 1
            if Ready.running == 20:
                print("running", flush=True)

asyncflow.register(Ready())

async def main():
    async with WorkflowEngine.create(backend=make_backend(sys.argv[1])) as flow:
        @flow.executable_task
        async def sleeper(i: int) -> str:
            return "sleep 3600"

        await asyncio.gather(*(sleeper(i) for i in range(20)))

asyncio.run(main())
"""


async def test_sigint_during_executables_ends_quietly(mode: str) -> None:
    # Issue 15: after the KeyboardInterrupt, nothing about destroyed tasks or a closed loop.
    tests = Path(__file__).parent
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", INTERRUPTED, mode, cwd=tests, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(tests)})
    try:
        assert child.stdout is not None and child.stderr is not None
        assert await asyncio.wait_for(child.stdout.readline(), LIMIT) == b"running\n"
        child.send_signal(signal.SIGINT)
        err = (await asyncio.wait_for(child.stderr.read(), LIMIT)).decode()
        assert await asyncio.wait_for(child.wait(), LIMIT) != 0
    finally:
        if child.returncode is None:  # never leave it behind
            child.kill()
            await child.wait()
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    for noise in ("Task was destroyed", "Event loop is closed", "never retrieved",
                  "Exception ignored"):
        assert noise not in err, err
