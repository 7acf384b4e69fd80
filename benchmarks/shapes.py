"""The workflow shapes of the benchmark, written once against a small adapter (:class:`Api`).

Every system (raw asyncio, this engine, the peers) provides an ``Api``; a shape only calls
``api.task``, ``api.block`` and ``api.gather``, so each system runs exactly the same graph.
Bodies do no work but compute a value, and each shape knows the value it must produce: a
system that runs a task before its dependency, or drops an argument, returns a wrong value
and is flagged in the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

Handle = Any  # whatever a system's task call returns (a future, an AppFuture, ...)


class Api(Protocol):
    """What a system offers a shape."""

    mode: str
    """``"async"`` (bodies are ``async def``) or ``"sync"`` (plain ``def``, run in threads)."""

    def task(self, body: Callable[..., Any]) -> Callable[..., Handle]:
        """Turn a body into a task; calling it returns a handle at once. Handles passed as
        arguments are dependencies, replaced by their values before the body runs."""

    def block(self, body: Callable[..., Awaitable[Any]]) -> Callable[..., Handle]:
        """Turn an ``async def`` composite (the seed's ``@flow.block``) into a block."""

    async def gather(self, handles: list[Handle]) -> list[Any]:
        """The values of ``handles``, in order."""


# -- bodies: one async and one sync version of each, chosen by ``api.mode`` -----------------


async def a_ident(x: Any) -> Any:
    return x


def s_ident(x: Any) -> Any:
    return x


async def a_add(x: int, y: int) -> int:
    return x + y


def s_add(x: int, y: int) -> int:
    return x + y


async def a_total(*xs: int) -> int:
    return sum(xs)


def s_total(*xs: int) -> int:
    return sum(xs)


SEED_SLEEP = 0.5  # the seed's simulated work


async def a_seed_step(name: str, *deps: float) -> float:
    await asyncio.sleep(SEED_SLEEP)
    return time.time()


def s_seed_step(name: str, *deps: float) -> float:
    time.sleep(SEED_SLEEP)
    return time.time()


BODIES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "ident": (a_ident, s_ident),
    "add": (a_add, s_add),
    "total": (a_total, s_total),
    "seed_step": (a_seed_step, s_seed_step),
}


def body(api: Api, name: str) -> Callable[..., Any]:
    async_body, sync_body = BODIES[name]
    return async_body if api.mode == "async" else sync_body


# -- the shapes ------------------------------------------------------------------------------


def _total(values: list[Any]) -> Any:
    """The sum of ``values``, or ``None`` when a dry run returned placeholders instead."""
    return sum(values) if all(type(v) is int for v in values) else None


@dataclass(frozen=True)
class Shape:
    name: str
    tasks: int
    """Units counted for "µs per task": tasks plus blocks (a chain: its levels)."""
    run: Callable[[Api], Awaitable[Any]]
    expected: Any
    description: str
    ideal: float | None = None
    """The critical path in seconds, for shapes whose bodies take time (S5)."""
    timeout: float = 120.0


async def independent(api: Api, n: int) -> int:
    ident = api.task(body(api, "ident"))
    return _total(await api.gather([ident(i) for i in range(n)]))


async def chain(api: Api, n: int) -> int:
    add = api.task(body(api, "add"))
    handle = add(0, 1)
    for _ in range(n - 1):
        handle = add(handle, 1)
    (value,) = await api.gather([handle])
    return value


async def fan(api: Api, n: int) -> int:
    ident, add, total = (api.task(body(api, b)) for b in ("ident", "add", "total"))
    source = ident(1)
    (value,) = await api.gather([total(*[add(source, i) for i in range(n)])])
    return value


def _seed_block(api: Api, step_body: str, step_args: Callable[[str], tuple[Any, ...]]
                ) -> Callable[..., Handle]:
    """The seed's ``create_block``: three workflows in sequence, each ``task1, task2 -> task3``."""
    step = api.task(body(api, step_body))

    async def create_workflow(name: str) -> Any:
        t1 = step(*step_args("task1"))
        t2 = step(*step_args("task2"))
        t3 = step(*step_args("task3"), t1, t2)
        (value,) = await api.gather([t3])
        return value

    async def create_block(name: str, *deps: Any) -> Any:
        return [await create_workflow(f"WF{i}") for i in (1, 2, 3)]

    return api.block(create_block)


async def composite(api: Api, n: int) -> int:
    # Sleep-0 composite: task1 = 1, task2 = 2, task3 = task1 + task2 = 3, so a block gives 9.
    def args(name: str) -> tuple[Any, ...]:
        return {"task1": (0, 1), "task2": (0, 2), "task3": ()}[name]

    block = _seed_block(api, "add", args)  # task3(t1, t2) = t1 + t2
    results = await api.gather([block(f"Block {i}") for i in range(n)])
    return _total([_total(r) for r in results])


async def seed(api: Api, n: int) -> int:
    start = time.time()
    block = _seed_block(api, "seed_step", lambda name: (name,))
    results = await api.gather([block(f"Block {c}") for c in "ABC"[:n]])
    # A workflow is two levels of 0.5 s (task3 waits for task1 and task2), and a block runs its
    # three in sequence: each workflow ends >= 1 s after the previous one. Count those that do.
    ok = 0
    for ends in results:
        if not all(type(end) is float for end in ends):
            return None  # a dry run
        for before, end in zip([start, *ends], ends, strict=False):
            ok += end - before >= 2 * SEED_SLEEP - 0.01
    return ok


def _shapes() -> dict[str, Shape]:
    def make(name: str, n: int, fn: Callable[[Api, int], Awaitable[int]], expected: int,
             description: str, units: int | None = None, ideal: float | None = None,
             timeout: float = 120.0) -> Shape:
        return Shape(name, units or n, lambda api: fn(api, n), expected, description, ideal,
                     timeout)

    return {s.name: s for s in (
        make("S1-indep-1k", 1_000, independent, sum(range(1_000)),
             "1,000 independent tasks"),
        make("S1-indep-10k", 10_000, independent, sum(range(10_000)),
             "10,000 independent tasks"),
        make("S2-chain-1k", 1_000, chain, 1_000, "a chain of 1,000 (µs per task = per level)"),
        make("S3-fan-1k", 1_000, fan, 1_000 + sum(range(1_000)),
             "1 -> 1,000 -> 1 (1,002 tasks)", units=1_002),
        make("S4-composite-100", 100, composite, 100 * 3 * 3,
             "the seed's composite with sleep 0: 100 blocks x 3 workflows x 3 tasks "
             "(1,000 = 900 tasks + 100 blocks)", units=1_000),
        make("S5-seed", 3, seed, 9, "the seed's example as written: 3 blocks, bodies sleep "
             "0.5 s (ideal 3.0 s)", units=30, ideal=3.0),
    )}


SHAPES = _shapes()
