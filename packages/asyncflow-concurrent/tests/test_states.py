"""Every task reports RUNNING when its body starts, then exactly one terminal state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concurrent_support import (
    LIMIT,
    fifo,
    make_backend,
    receive,
    release,
    send_pid_then_work,
    wait_for,
    wait_for_async,
)

from asyncflow import TaskTimeoutError
from asyncflow.backend import TaskKind, TaskSpec, TaskState
from asyncflow.testing import Recorder


def spec(uid: str, function: Callable[..., Any], *args: Any, **fields: Any) -> TaskSpec:
    return TaskSpec(uid, function.__name__, TaskKind.FUNCTION, function, args,
                    is_coroutine=asyncio.iscoroutinefunction(function), **fields)


async def test_running_when_the_body_starts_then_one_terminal_state(mode: str,
                                                                    tmp_path: Path) -> None:
    backend = make_backend(mode)
    recorder = Recorder(timeout=LIMIT)
    backend.attach(recorder)
    await backend.open()
    try:
        sync_gate, async_gate = fifo(tmp_path / "sync"), fifo(tmp_path / "async")
        blocked = [spec("sync", wait_for, sync_gate), spec("async", wait_for_async, async_gate)]
        failing = spec("failing", int, "not a number")
        timed_out = spec("timed-out", send_pid_then_work, fifo(tmp_path / "pid"), LIMIT,
                         timeout=0.3)
        recorder.expect(["sync", "async", "failing", "timed-out"])
        await backend.submit([*blocked, failing])
        for task in blocked:  # RUNNING arrives while the body is still blocked
            await recorder.running(task.uid)
            assert recorder.states(task.uid) == [TaskState.RUNNING]
        await release(sync_gate, "s")
        await release(async_gate, "a")
        assert (await recorder.terminal("sync")).value == "s"
        assert (await recorder.terminal("async")).value == "a"
        assert isinstance((await recorder.terminal("failing")).error, ValueError)

        if mode == "processes":  # a thread would run on for LIMIT seconds
            await backend.submit([timed_out])
            await receive(timed_out.args[0])
            assert isinstance((await recorder.terminal("timed-out")).error, TaskTimeoutError)
    finally:
        await backend.close()
    for uid in recorder.updates:  # shutdown added nothing
        states = recorder.states(uid)
        assert states[0] is TaskState.RUNNING and len(states) == 2, (uid, states)
        assert states[1].is_terminal
    assert recorder.violations == []


async def test_shutdown_settles_every_task_once(mode: str, tmp_path: Path) -> None:
    backend = make_backend(mode, workers=2)
    recorder = Recorder(timeout=LIMIT)
    backend.attach(recorder)
    await backend.open()
    gate = fifo(tmp_path / "gate")
    coroutines = [spec(f"coroutine-{i}", asyncio.sleep, 3600) for i in range(3)]
    waiting = spec("waiting", wait_for_async, gate)
    recorder.expect(task.uid for task in [waiting, *coroutines])
    await backend.submit([waiting])
    await recorder.running("waiting")
    await backend.submit(coroutines)  # one runs, the others wait for a worker
    if mode == "processes":
        await backend.close()
    else:  # the thread blocked on the gate must be let go: threads cannot be stopped
        closing = asyncio.ensure_future(backend.close())
        await release(gate)
        await closing
    for task in [*coroutines, waiting]:
        states = recorder.states(task.uid)
        assert states[-1:] == [TaskState.CANCELLED] and states.count(TaskState.CANCELLED) == 1, \
            (task.uid, states)
    assert recorder.violations == []
