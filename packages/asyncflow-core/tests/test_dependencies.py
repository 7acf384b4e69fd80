"""Issue 2, point 3: futures in arguments are dependencies; blocks depend and are depended on."""

from __future__ import annotations

import asyncio
from typing import Any

from loop_backend import LoopBackend, record_of

from asyncflow import TaskState, WorkflowEngine


async def test_futures_anywhere_in_the_arguments_are_waited_for_and_replaced(
        flow: WorkflowEngine) -> None:
    gate = asyncio.Event()

    @flow.function_task
    async def value(x: int) -> int:
        await gate.wait()
        return x

    @flow.function_task
    async def show(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    a, b, c, d, e = (value(i) for i in range(5))
    future = show(a, [b, (c, {d})], key=e, nested={"k": [frozenset({a})]})
    assert record_of(flow, future.uid).waiting == 5  # a counts once although given twice
    gate.set()
    args, kwargs = await future
    assert args == (0, [1, (2, {3})])
    assert kwargs == {"key": 4, "nested": {"k": [frozenset({0})]}}


async def test_a_repeated_dependency_is_counted_once(noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def pair(*args: Any, **kwargs: Any) -> None: ...

    t1 = pair()
    assert await asyncio.wait_for(pair(t1, t1), 10) == "Dummy Output"
    assert await asyncio.wait_for(pair(t1, x=t1, y=[t1, {"z": t1}]), 10) == "Dummy Output"


async def test_a_dependent_waits_until_its_dependencies_are_done(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def slow() -> str:
        started.set()
        await gate.wait()
        return "slow"

    @flow.function_task
    async def after(value: str) -> str:
        return value + " then after"

    upstream = slow()
    future = after(upstream)
    await started.wait()
    assert upstream.state == TaskState.RUNNING and future.state == TaskState.PENDING
    assert [spec.name for spec in backend.specs] == ["slow"]  # `after` is not submitted yet
    gate.set()
    assert await future == "slow then after"


async def test_an_executable_body_runs_after_its_dependencies_and_sees_their_values(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    gate = asyncio.Event()
    bodies: list[str] = []

    @flow.function_task
    async def word(started: asyncio.Event) -> str:
        started.set()
        await gate.wait()
        return "resolved"

    @flow.executable_task
    async def say(text: str, times: int = 1) -> str:
        bodies.append(text)
        return f"echo {text} {times}"

    first, second = asyncio.Event(), asyncio.Event()
    future = say(word(first), times=word(second))
    await first.wait()
    await second.wait()
    assert bodies == []  # the body builds the command only once the values exist
    gate.set()
    assert await future == "resolved resolved\n"
    assert bodies == ["resolved"] and backend.specs[-1].command == ("echo", "resolved",
                                                                    "resolved")


async def test_blocks_depend_on_tasks_and_tasks_on_blocks(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def add(a: int, b: int) -> int:
        return a + b

    @flow.block
    async def pipeline(start: int) -> int:
        return await add(await add(start, 1), 1)

    first = pipeline(add(1, 1))          # a block depending on a task
    second = pipeline(first)             # ... and on a block
    total = add(first, second)           # a task depending on blocks
    assert await total == 4 + 6


async def test_blocks_nest_and_record_their_members(flow: WorkflowEngine) -> None:
    seen: dict[str, Any] = {}

    @flow.function_task
    async def leaf(x: int) -> int:
        return x * 10

    @flow.block
    async def inner(x: int) -> int:
        task = leaf(x)
        seen["leaf"] = record_of(flow, task.uid).block
        return await task

    @flow.block
    async def outer() -> list[int]:
        blocks = [inner(1), inner(2)]
        seen["inner"] = [record_of(flow, b.uid).block for b in blocks]
        return list(await asyncio.gather(*blocks))

    future = outer()
    assert await future == [10, 20]
    assert seen["inner"] == [future.uid, future.uid]
    assert seen["leaf"].startswith("block.") and seen["leaf"] != future.uid


async def test_a_task_may_depend_on_a_task_of_another_engine_on_the_same_loop(
        flow: WorkflowEngine) -> None:
    other = await WorkflowEngine.create(backend=LoopBackend())
    try:
        gate = asyncio.Event()

        @other.function_task
        async def elsewhere() -> int:
            await gate.wait()
            return 41

        @flow.function_task
        async def here(x: int) -> int:
            return x + 1

        future = here(elsewhere())
        gate.set()
        assert await future == 42
    finally:
        await other.shutdown()


async def test_a_future_as_a_dict_key_fails_that_task(noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def keyed(mapping: dict[Any, int]) -> None: ...

    future = keyed({keyed({}): 1})
    try:
        await future
    except TypeError as exc:
        assert "keyed" in str(exc) and "dict key" in str(exc)
    else:
        raise AssertionError("a future used as a dict key was accepted")
    assert await keyed({"fine": 1}) == "Dummy Output"

