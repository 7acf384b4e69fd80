"""The conformance kit's public ``Recorder``: the sink backend authors drive a backend with
directly, which checks every update against the contract as it arrives."""

from __future__ import annotations

import asyncio
import threading

import pytest
from loop_backend import LoopBackend

from asyncflow import TaskKind, TaskSpec, TaskState, TaskUpdate
from asyncflow.testing import Recorder

LIMIT = 30.0


async def triple(x: int) -> int:
    await asyncio.sleep(0)
    return 3 * x


async def test_drives_a_backend_as_its_docstring_shows(backend: LoopBackend) -> None:
    specs = [TaskSpec(f"recorder.{i}", "triple", TaskKind.FUNCTION, triple, (i,),
                      is_coroutine=True) for i in range(3)]
    recorder = Recorder(timeout=LIMIT)
    backend.attach(recorder)
    async with backend:
        recorder.expect(spec.uid for spec in specs)
        await backend.submit(specs)
        assert (await recorder.running("recorder.1")).state is TaskState.RUNNING
        assert (await recorder.terminal("recorder.2")).value == 6
        outcomes = await recorder.all_terminal(specs)
    assert [u.value for u in outcomes.values()] == [0, 3, 6]
    assert recorder.states("recorder.0") == [TaskState.RUNNING, TaskState.DONE]
    assert recorder.states("recorder.never") == []
    assert recorder.violations == []


async def test_an_update_that_arrived_is_returned_at_once() -> None:
    recorder = Recorder(timeout=LIMIT)
    recorder.expect(["skipped"])
    recorder(TaskUpdate.cancelled("skipped"))
    # A task cancelled before it ran skips RUNNING: its first update is the terminal one.
    assert await recorder.running("skipped") == await recorder.terminal("skipped")
    assert recorder.terminal_of("skipped") == TaskUpdate.cancelled("skipped")
    assert recorder.terminal_of("other") is None


async def test_each_breach_of_the_contract_is_a_violation() -> None:
    recorder = Recorder()
    recorder.expect(["a", "b", "c"])
    recorder(TaskUpdate.running("a"))
    recorder(TaskUpdate.running("a"))
    recorder(TaskUpdate.done("a", 1))
    recorder(TaskUpdate.done("a", 2))
    recorder(TaskUpdate("b", TaskState.FAILED))
    recorder(TaskUpdate.done("unknown"))
    recorder("not an update")
    thread = threading.Thread(target=recorder, args=(TaskUpdate.done("c"),), name="elsewhere")
    thread.start()
    await asyncio.to_thread(thread.join)
    assert recorder.violations == [
        "a: RUNNING reported twice",
        "a: DONE reported after the terminal state DONE",
        "b: FAILED without an exception (error=None)",
        "an update for 'unknown', which was never submitted: DONE",
        "reported 'not an update', which is not a TaskUpdate",
        f"the update {TaskUpdate.done('c')!r} reached the engine on thread elsewhere, not the "
        "event loop's",
    ]
    # The first terminal update is the task's outcome; a later one changes nothing.
    assert (await recorder.terminal("a")).value == 1


async def test_an_await_past_the_timeout_names_what_it_waited_for() -> None:
    recorder = Recorder(timeout=0.01)
    recorder.expect(["silent"])
    with pytest.raises(TimeoutError, match=r"waited 0.01 s for the terminal update of silent"):
        await recorder.terminal("silent")
    with pytest.raises(TimeoutError, match=r"for RUNNING \(the first update\) of silent"):
        await recorder.running("silent")
    # A waiter that timed out is not woken later: the update is simply recorded.
    recorder(TaskUpdate.done("silent", 5))
    assert (await recorder.terminal("silent")).value == 5
    assert recorder.violations == []
