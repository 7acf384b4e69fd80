"""When an ``async def`` body on the engine's loop starts: inside ``submit`` where Python has
eager tasks (3.12 and later), in the next loop iteration otherwise or when the loop has a task
factory of its own."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from asyncflow.backend import TaskKind, TaskSpec, TaskState, TaskUpdate
from asyncflow_concurrent import ConcurrentExecutionBackend

EAGER = sys.version_info >= (3, 12)


async def at_once(x: int) -> int:
    return x + 1


async def after_a_wait(gate: asyncio.Event) -> str:
    await gate.wait()
    return "opened"


def spec(uid: str, function: Any, *args: Any) -> TaskSpec:
    return TaskSpec(uid, function.__name__, TaskKind.FUNCTION, function, args, is_coroutine=True)


async def submitted(backend: ConcurrentExecutionBackend, *specs: TaskSpec
                    ) -> list[TaskUpdate]:
    """Start the backend, submit ``specs``, and return the reports that arrived during submit."""
    reports: list[TaskUpdate] = []
    backend.attach(reports.append)
    await backend.open()
    await backend.submit(list(specs))
    return list(reports)


async def test_a_body_that_never_waits_is_done_when_submit_returns_on_eager_pythons() -> None:
    backend = ConcurrentExecutionBackend()
    try:
        during_submit = await submitted(backend, spec("task.000001", at_once, 41))
        if EAGER:
            assert [(u.state, u.value) for u in during_submit] == [
                (TaskState.RUNNING, None), (TaskState.DONE, 42)]
        else:  # the driver's first step is the next loop iteration's
            assert during_submit == []
    finally:
        await backend.close()


async def test_a_body_that_waits_runs_to_its_first_wait_inside_submit_on_eager_pythons(
        ) -> None:
    backend = ConcurrentExecutionBackend()
    gate = asyncio.Event()
    try:
        during_submit = await submitted(backend, spec("task.000001", after_a_wait, gate))
        assert [u.state for u in during_submit] == ([TaskState.RUNNING] if EAGER else [])
        job = backend._jobs["task.000001"]
        assert job.driver is not None and not job.driver.done()
        gate.set()
        async with asyncio.timeout(30):
            await job.driver
        assert backend._jobs == {}
    finally:
        await backend.close()


async def test_a_loop_task_factory_decides_how_drivers_start() -> None:
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    backend = ConcurrentExecutionBackend()
    loop.set_task_factory(factory)
    try:
        during_submit = await submitted(backend, spec("task.000001", at_once, 1))
        assert during_submit == []  # not eager: the factory's task starts next iteration
        driver = backend._jobs["task.000001"].driver
        assert driver is not None and driver in made
        async with asyncio.timeout(30):
            await driver
    finally:
        loop.set_task_factory(None)
        await backend.close()
