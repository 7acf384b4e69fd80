"""Shutdown with work in flight: every future settles, no child process outlives it."""

from __future__ import annotations

import asyncio
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
