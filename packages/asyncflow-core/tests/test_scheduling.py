"""Issue 2, point 4: event-driven scheduling, one submit per backend per loop iteration,
finished tasks leave the engine's tables."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence

from loop_backend import FunctionsOnlyBackend, LoopBackend

from asyncflow import Capabilities, ExecutionBackend, TaskSpec, TaskUpdate, WorkflowEngine


async def test_tasks_ready_in_one_iteration_go_in_one_submit(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task
    async def square(x: int) -> int:
        return x * x

    @flow.function_task
    async def total(*values: int) -> int:
        return sum(values)

    futures = [square(i) for i in range(50)]
    assert await total(*futures) == sum(i * i for i in range(50))
    assert len(backend.batches[0]) == 50
    assert backend.batches[-1][0].name == "total"


async def test_each_backend_gets_its_own_batch() -> None:
    first, second = LoopBackend(), FunctionsOnlyBackend()
    async with await WorkflowEngine.create(backend=[first, second]) as flow:
        @flow.function_task
        async def here() -> str:
            return "loop"

        @flow.function_task(backend="functions_only")
        async def there() -> str:
            return "functions_only"

        futures = [here(), there(), here(), there(), there()]
        assert await asyncio.gather(*futures) == ["loop", "functions_only", "loop",
                                                  "functions_only", "functions_only"]
    assert [[s.name for s in b] for b in first.batches] == [["here", "here"]]
    assert [[s.name for s in b] for b in second.batches] == [["there", "there", "there"]]


async def test_nothing_waits_on_a_timer_while_tasks_are_in_flight(flow: WorkflowEngine) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def held() -> int:
        started.set()
        await gate.wait()
        return 1

    @flow.function_task
    async def plus_one(x: int) -> int:
        return x + 1

    future = plus_one(plus_one(held()))
    await started.wait()
    loop = asyncio.get_running_loop()
    assert not loop._scheduled  # type: ignore[attr-defined]  # no polling, no sleep, no timeout
    gate.set()
    assert await future == 3


async def test_a_long_chain_runs_without_polling(noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task
    async def step(previous: object) -> None: ...

    future = step(None)
    for _ in range(500):
        future = step(future)
    assert await asyncio.wait_for(future, 30) == "Dummy Output"


async def test_finished_tasks_leave_the_engine_tables(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def ok(x: int) -> int:
        return x

    @flow.function_task
    async def broken() -> None:
        raise ValueError("broken")

    @flow.block
    async def group(n: int) -> list[int]:
        return list(await asyncio.gather(*(ok(i) for i in range(n))))

    futures = [ok(1), broken(), group(5), ok(broken())]
    held = ok(2)
    held.cancel()  # cancelled before its batch went out
    await asyncio.gather(*futures, return_exceptions=True)
    assert flow.counts() == {}
    assert all(not s.batch for s in flow._submitters.values())
    assert all(f._record is None for f in [held, *futures])
    await asyncio.gather(*flow._tasks)  # block bodies end right after they return
    assert not flow._tasks


async def test_nothing_holds_the_arguments_of_a_finished_task(noop_flow: WorkflowEngine) -> None:
    class Payload:
        pass

    @noop_flow.function_task
    async def use(payload: Payload) -> None: ...

    payload = Payload()
    gone = weakref.ref(payload)
    await use(payload)  # its spec went out in a batch, and the submitter sleeps again
    del payload
    gc.collect()
    assert gone() is None


class InlineBackend(ExecutionBackend):
    """Runs plain ``def`` bodies inside ``submit`` and reports on the spot: re-entrancy."""

    name = "inline"
    capabilities = Capabilities(function_tasks=True)

    def __init__(self, raise_after: bool = False) -> None:
        super().__init__()
        self.raise_after = raise_after
        self.submits = 0

    async def start(self) -> None: ...

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        self.submits += 1
        for spec in tasks:
            assert spec.function is not None
            self.report(TaskUpdate.running(spec.uid))
            self.report(TaskUpdate.done(spec.uid, spec.function(*spec.args, **spec.kwargs)))
        if self.raise_after:
            raise RuntimeError("submit broke after reporting")

    async def cancel(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None: ...


async def test_a_backend_may_report_inside_submit() -> None:
    backend = InlineBackend()
    async with await WorkflowEngine.create(backend=backend) as flow:
        @flow.function_task
        def inc(x: int) -> int:
            return x + 1

        chain = inc(inc(inc(0)))
        fan = [inc(chain) for _ in range(10)]
        assert await asyncio.gather(chain, *fan) == [3] + [4] * 10
        assert flow.counts() == {}
    assert backend.submits == 4  # one per level: reports inside submit start new batches


async def test_a_submit_that_raises_after_reporting_does_not_undo_the_reports() -> None:
    async with await WorkflowEngine.create(backend=InlineBackend(raise_after=True)) as flow:
        @flow.function_task
        def inc(x: int) -> int:
            return x + 1

        assert await inc(inc(1)) == 3
