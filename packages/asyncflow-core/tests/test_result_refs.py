"""Results that stay where they were computed: ``TaskUpdate.done(..., ref=...)``.

A backend that keeps results near its workers (Dask) reports a ref with ``DONE``; the engine
hands that ref, instead of the value, to later tasks on the same backend, and the value to
everything else (other backends, executables' command bodies, blocks).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence
from typing import Any

from asyncflow import ExecutionBackend, TaskSpec, TaskUpdate, WorkflowEngine


class Ref:
    """Where a result lives in :class:`KeepingBackend`; weak-referenceable, to watch its life."""

    def __init__(self, uid: str) -> None:
        self.uid = uid


class KeepingBackend(ExecutionBackend):
    """Runs ``async def`` bodies on the loop and keeps each result in its store under a Ref."""

    name = "keeping"

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[str, Any] = {}
        self.args_seen: dict[str, tuple[Any, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        pass

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for spec in tasks:
            self.args_seen[spec.name] = spec.args
            task = asyncio.get_running_loop().create_task(self._run(spec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, Ref):
            return self.store[arg.uid]
        if type(arg) is list:
            return [self._value(item) for item in arg]
        return arg

    async def _run(self, spec: TaskSpec) -> None:
        assert spec.function is not None
        value = await spec.function(*(self._value(a) for a in spec.args), **spec.kwargs)
        self.store[spec.uid] = value
        self.report(TaskUpdate.done(spec.uid, value, ref=Ref(spec.uid)))

    async def cancel(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        await asyncio.gather(*self._tasks)


class OtherBackend(KeepingBackend):
    name = "other"


async def test_a_result_reaches_a_task_on_the_same_backend_as_its_ref() -> None:
    keeping, other = KeepingBackend(), OtherBackend()
    async with await WorkflowEngine.create(backend=[keeping, other]) as flow:

        @flow.function_task
        async def make() -> list[int]:
            return [1, 2, 3]

        @flow.function_task
        async def total(values: list[int]) -> int:
            return sum(values)

        @flow.function_task
        async def both(pair: list[list[int]]) -> int:
            return sum(map(sum, pair))

        @flow.function_task(backend="other")
        async def elsewhere(values: list[int]) -> int:
            return len(values)

        made = make()
        assert await total(made) == 6
        assert await both([made, made]) == 12
        assert await elsewhere(made) == 3

    (ref,) = keeping.args_seen["total"]
    assert isinstance(ref, Ref) and ref.uid == made.uid  # not the value: the backend's ref
    (pair,) = keeping.args_seen["both"]
    assert [type(item) for item in pair] == [Ref, Ref]  # found inside containers too
    assert other.args_seen["elsewhere"] == ([1, 2, 3],)  # another backend gets the value


async def test_executables_and_blocks_get_values_not_refs() -> None:
    keeping = KeepingBackend()
    async with await WorkflowEngine.create(backend=keeping) as flow:

        @flow.function_task
        async def make() -> list[int]:
            return [1, 2]

        @flow.executable_task
        async def show(values: list[int]) -> str:
            assert values == [1, 2]
            return f"echo {len(values)}"

        @flow.block
        async def group(values: list[int]) -> int:
            return len(values)

        made = make()
        assert await group(made) == 2
        assert not keeping.capabilities.executable_tasks  # the engine refuses it cleanly
        command = show(made)
        await asyncio.wait([command])
        assert command.exception() is not None


async def test_the_ref_lives_as_long_as_the_tasks_future() -> None:
    keeping = KeepingBackend()
    async with await WorkflowEngine.create(backend=keeping) as flow:

        @flow.function_task
        async def make() -> int:
            return 7

        future = make()
        assert await future == 7
        assert future._ref is not None
        ref = weakref.ref(future._ref[1])
        del future
        await asyncio.sleep(0)  # the loop's handle that woke us up still holds the future
        gc.collect()
        assert ref() is None  # dropping the future releases the ref: memory stays flat
