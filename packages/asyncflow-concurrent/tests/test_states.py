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
from asyncflow.backend import TaskKind, TaskSpec, TaskState, TaskUpdate


class Sink:
    """Records a backend's reports and lets the test await them."""

    def __init__(self) -> None:
        self.updates: dict[str, list[TaskUpdate]] = {}
        self._changed = asyncio.Event()

    def __call__(self, update: TaskUpdate) -> None:
        self.updates.setdefault(update.uid, []).append(update)
        self._changed.set()

    async def first(self, uid: str, done: Callable[[list[TaskUpdate]], bool]) -> None:
        async with asyncio.timeout(LIMIT):
            while not done(self.updates.get(uid, [])):
                self._changed.clear()
                await self._changed.wait()

    async def running(self, uid: str) -> None:
        await self.first(uid, lambda updates: bool(updates))

    async def settled(self, uid: str) -> TaskUpdate:
        await self.first(uid, lambda updates: any(u.state.is_terminal for u in updates))
        return self.updates[uid][-1]


def spec(uid: str, function: Callable[..., Any], *args: Any, **fields: Any) -> TaskSpec:
    return TaskSpec(uid, function.__name__, TaskKind.FUNCTION, function, args,
                    is_coroutine=asyncio.iscoroutinefunction(function), **fields)


async def test_running_when_the_body_starts_then_one_terminal_state(mode: str,
                                                                    tmp_path: Path) -> None:
    backend = make_backend(mode)
    sink = Sink()
    backend.attach(sink)
    await backend.open()
    try:
        sync_gate, async_gate = fifo(tmp_path / "sync"), fifo(tmp_path / "async")
        blocked = [spec("sync", wait_for, sync_gate), spec("async", wait_for_async, async_gate)]
        failing = spec("failing", int, "not a number")
        timed_out = spec("timed-out", send_pid_then_work, fifo(tmp_path / "pid"), LIMIT,
                         timeout=0.3)
        await backend.submit([*blocked, failing])
        for task in blocked:  # RUNNING arrives while the body is still blocked
            await sink.running(task.uid)
            assert [u.state for u in sink.updates[task.uid]] == [TaskState.RUNNING]
        await release(sync_gate, "s")
        await release(async_gate, "a")
        assert (await sink.settled("sync")).value == "s"
        assert (await sink.settled("async")).value == "a"
        assert isinstance((await sink.settled("failing")).error, ValueError)

        if mode == "processes":  # a thread would run on for LIMIT seconds
            await backend.submit([timed_out])
            await receive(timed_out.args[0])
            assert isinstance((await sink.settled("timed-out")).error, TaskTimeoutError)
    finally:
        await backend.close()
    for uid, updates in sink.updates.items():  # shutdown added nothing
        states = [u.state for u in updates]
        assert states[0] is TaskState.RUNNING and len(states) == 2, (uid, states)
        assert states[1].is_terminal


async def test_shutdown_settles_every_task_once(mode: str, tmp_path: Path) -> None:
    backend = make_backend(mode, workers=2)
    sink = Sink()
    backend.attach(sink)
    await backend.open()
    gate = fifo(tmp_path / "gate")
    coroutines = [spec(f"coroutine-{i}", asyncio.sleep, 3600) for i in range(3)]
    waiting = spec("waiting", wait_for_async, gate)
    await backend.submit([waiting])
    await sink.running("waiting")
    await backend.submit(coroutines)  # one runs, the others wait for a worker
    if mode == "processes":
        await backend.close()
    else:  # the thread blocked on the gate must be let go: threads cannot be stopped
        closing = asyncio.ensure_future(backend.close())
        await release(gate)
        await closing
    for task in [*coroutines, waiting]:
        states = [u.state for u in sink.updates.get(task.uid, [])]
        assert states[-1:] == [TaskState.CANCELLED] and states.count(TaskState.CANCELLED) == 1, \
            (task.uid, states)
