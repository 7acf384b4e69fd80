"""Random graphs, seeded: the engine's promises on many shapes at once, on every mode.

Each seed builds a random DAG through the public API: function tasks (sync and ``async def``)
whose arguments are earlier nodes' futures (fan-in 0..3, a future passed twice, futures nested
in lists and dicts, keyword arguments) and blocks that call a chain of tasks and await them.
Some nodes, chosen by the seed, raise. A plain evaluation of the same graph in the test says
what every future must hold, so no result is written down by hand.

Every body leaves one marker file per run, in all modes (process-mode bodies run in other
processes, so an in-memory counter would not see them); the files are counted after shutdown,
when no worker can still be running a body.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from concurrent_support import LIMIT, make_backend

from asyncflow import DependencyFailureError, TaskFuture, WorkflowEngine

SEEDS = (3, 11, 19, 42, 77, 2024)
# Process mode pays a round trip to a worker per task: small graphs keep the file fast.
SIZES = {"loop": 60, "threads": 60, "processes": 24}
WINDOW = 6  # dependencies come from the WINDOW nodes before: deep graphs, not flat ones
MAX_FAN_IN = 3
MODULUS = 1_000_003


class NodeError(Exception):
    """What a node chosen to fail raises; its argument is the node's salt."""


# -- the graph: a plain description the engine run and the reference evaluation share -----


@dataclass(frozen=True)
class Ref:
    """Node ``index``'s future in a node's arguments (its value in the reference)."""

    index: int


@dataclass(frozen=True)
class Node:
    index: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    is_block: bool = False
    is_async: bool = False
    fails: bool = False  # a task: its body raises NodeError
    inner_fails: tuple[bool, ...] = ()  # a block: which task of its chain raises

    @property
    def salt(self) -> int:
        return self.index + 1

    @property
    def parents(self) -> set[int]:
        return {ref.index for ref in refs_in((self.args, self.kwargs))}


def refs_in(value: Any) -> Iterator[Ref]:
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from refs_in(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from refs_in(item)


def substitute(value: Any, lookup: Callable[[int], Any]) -> Any:
    """``value`` with every Ref replaced by ``lookup(index)``, its shape kept."""
    if isinstance(value, Ref):
        return lookup(value.index)
    if isinstance(value, Mapping):
        return {key: substitute(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, lookup) for item in value]
    if isinstance(value, tuple):
        return tuple(substitute(item, lookup) for item in value)
    return value


def random_graph(rng: random.Random, size: int) -> list[Node]:
    # Failing nodes come from the first two thirds, where they have descendants to fail.
    failing = set(rng.sample(range(size * 2 // 3), max(1, size // 8)))
    blocks = set(rng.sample(range(size), max(2, size // 6)))
    nodes = []
    for i in range(size):
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        earlier = range(max(0, i - WINDOW), i)
        for parent in rng.sample(earlier, rng.randint(0, min(len(earlier), MAX_FAN_IN))):
            ref = Ref(parent)
            form = rng.choice(("plain", "twice", "list", "dict", "keyword"))
            if form == "plain":
                args.append(ref)
            elif form == "twice":  # one dependency, two arguments
                args += [ref, ref]
            elif form == "list":
                args.append([rng.randint(0, 9), ref])
            elif form == "dict":
                args.append({"constant": rng.randint(0, 9), "upstream": ref})
            else:
                kwargs[f"from_{parent}"] = ref
        if rng.random() < 0.3:
            args.append(rng.randint(0, 99))
        if i in blocks:
            chain = rng.randint(1, 3)
            fails = [False] * chain
            if i in failing:
                fails[rng.randrange(chain)] = True
            nodes.append(Node(i, tuple(args), kwargs, is_block=True, inner_fails=tuple(fails)))
        else:
            nodes.append(Node(i, tuple(args), kwargs, is_async=rng.random() < 0.3,
                              fails=i in failing))
    return nodes


def describe(graph: list[Node]) -> str:
    lines = []
    for node in graph:
        kind = ("block" + str(list(node.inner_fails)) if node.is_block
                else "async task" if node.is_async else "task")
        lines.append(f"  {node.index}: {kind}{' FAILS' if node.fails else ''} "
                     f"args={node.args} kwargs={dict(node.kwargs)}")
    return "\n".join(lines)


# -- what the bodies compute: the engine runs these, the reference evaluation too ----------


def flatten(value: Any) -> list[int]:
    if isinstance(value, Mapping):
        value = [value[key] for key in sorted(value)]
    if isinstance(value, tuple | list):
        return [number for item in value for number in flatten(item)]
    return [value]


def combine(salt: int, inputs: Iterable[Any], named: Mapping[str, Any]) -> int:
    """A value that changes if an input is lost, duplicated, swapped or wrong."""
    flat = flatten([*inputs, *(named[key] for key in sorted(named))])
    return (salt * 7919 + sum((pos + 1) * number for pos, number in enumerate(flat))) % MODULUS


def inner_salt(block_salt: int, step: int) -> int:
    return 1000 * block_salt + step


def mark(markers: str, label: str) -> None:
    """Leave one file per run: a second run of the same body leaves a second file."""
    fd, _ = tempfile.mkstemp(prefix=f"{label}@", dir=markers)
    os.close(fd)


def node_body(salt: int, markers: str, fails: bool, *inputs: Any, **named: Any) -> int:
    mark(markers, str(salt))
    if fails:
        raise NodeError(salt)
    return combine(salt, inputs, named)


async def async_node_body(salt: int, markers: str, fails: bool, *inputs: Any,
                          **named: Any) -> int:
    return node_body(salt, markers, fails, *inputs, **named)


# -- the reference evaluation ---------------------------------------------------------------


@dataclass
class Expected:
    status: dict[int, str]  # "ok", "raised", "skipped" (an ancestor failed) or "cancelled"
    values: dict[int, int]
    first_inner_failure: dict[int, int]  # a raising block: the step of its chain that raised
    runs: Counter[str]  # marker label -> runs: once for each body that must run


def evaluate(graph: list[Node], cancelled: frozenset[int] = frozenset()) -> Expected:
    """What the engine must produce when the nodes in ``cancelled`` are cancelled before
    anything ran: cancellation then reaches every descendant before any failure can."""
    expected = Expected({}, {}, {}, Counter())
    status, values = expected.status, expected.values
    for node in graph:
        parent_status = {status[p] for p in node.parents}
        if node.index in cancelled or "cancelled" in parent_status:
            status[node.index] = "cancelled"
            continue
        if parent_status - {"ok"}:
            status[node.index] = "skipped"
            continue
        expected.runs[str(node.salt)] += 1
        inputs = substitute(node.args, values.__getitem__)
        named = substitute(node.kwargs, values.__getitem__)
        if not node.is_block:
            status[node.index] = "raised" if node.fails else "ok"
            if not node.fails:
                values[node.index] = combine(node.salt, inputs, named)
            continue
        base = previous = combine(node.salt, inputs, named)
        results = []
        for step, fails in enumerate(node.inner_fails):
            expected.runs[str(inner_salt(node.salt, step))] += 1
            if fails:
                status[node.index] = "raised"
                expected.first_inner_failure[node.index] = step
                break
            previous = combine(inner_salt(node.salt, step), (previous, base), {})
            results.append(previous)
        else:
            status[node.index] = "ok"
            values[node.index] = combine(node.salt, results, {})
    return expected


# -- running a graph on the engine ----------------------------------------------------------


@dataclass
class Run:
    futures: dict[int, TaskFuture[int]]
    inner: dict[tuple[int, int], TaskFuture[int]]  # (block index, step) -> its chain's task
    settled: list[str]  # uids in the order their futures settled


def build(flow: WorkflowEngine, graph: list[Node], markers: Path) -> Run:
    run = Run({}, {}, [])
    task = flow.function_task(node_body)
    async_task = flow.function_task(async_node_body)

    @flow.block
    async def chain(index: int, salt: int, fails: tuple[bool, ...], *inputs: Any,
                    **named: Any) -> int:
        mark(str(markers), str(salt))
        base = previous = combine(salt, inputs, named)
        steps = []
        for step, step_fails in enumerate(fails):
            # The first step gets a value, each later one the future of the step before.
            previous = task(inner_salt(salt, step), str(markers), step_fails, previous, base)
            run.inner[index, step] = previous
            steps.append(previous)
        return combine(salt, [await step for step in steps], {})

    for node in graph:
        args = substitute(node.args, run.futures.__getitem__)
        kwargs = substitute(node.kwargs, run.futures.__getitem__)
        if node.is_block:
            future = chain(node.index, node.salt, node.inner_fails, *args, **kwargs)
        else:
            call = async_task if node.is_async else task
            future = call(node.salt, str(markers), node.fails, *args, **kwargs)
        # Done callbacks run in the order the futures settle: the order the engine saw.
        future.add_done_callback(lambda done: run.settled.append(done.uid))
        run.futures[node.index] = future
    return run


async def settle(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait for every future, bounded; fail naming those still pending."""
    futures = list(futures)
    if not futures:
        return
    _, pending = await asyncio.wait(futures, timeout=LIMIT)
    assert not pending, f"futures still pending after {LIMIT}s: {pending}"
    await asyncio.gather(*futures, return_exceptions=True)  # done already: returns at once


def runs(markers: Path) -> Counter[str]:
    return Counter(name.split("@")[0] for name in os.listdir(markers))


def task_name(future: TaskFuture[Any]) -> str:
    return f"{future.name!r} ({future.uid})"


# -- the checks -----------------------------------------------------------------------------


def problems(graph: list[Node], expected: Expected, run: Run) -> list[str]:
    """Every way the run differs from the reference evaluation."""
    found = []
    order = {uid: position for position, uid in enumerate(run.settled)}
    root: dict[int, int] = {}  # a failed node -> the node whose exception it carries
    for node in graph:
        i, future, status = node.index, run.futures[node.index], expected.status[node.index]
        where = f"node {i} ({future.uid}, expected {status})"
        if not future.done():
            found.append(f"{where}: pending")
            continue
        if status == "cancelled":
            if not future.cancelled():
                found.append(f"{where}: not cancelled: {future!r}")
            continue
        if future.cancelled():
            found.append(f"{where}: cancelled")
            continue
        error = future.exception()
        if status == "ok":
            if error is not None:
                found.append(f"{where}: failed with {error!r}")
            elif future.result() != expected.values[i]:
                found.append(f"{where}: {future.result()} != {expected.values[i]}")
        elif status == "raised":
            root[i] = i
            if node.is_block:  # it fails with the exception of the step that raised
                step = expected.first_inner_failure[i]
                if error is not run.inner[i, step].exception():
                    found.append(f"{where}: {error!r} is not step {step}'s exception")
            elif type(error) is not NodeError or error.args != (node.salt,):
                found.append(f"{where}: failed with {error!r}, not NodeError({node.salt})")
        else:  # skipped: it carries the failure that reached it first
            # It fails while that failure spreads from the task that raised (in one call,
            # depth first), so every failed dependency settled before it carries that root.
            before = [p for p in node.parents if expected.status[p] in ("raised", "skipped")
                      and order[run.futures[p].uid] < order[future.uid]]
            if not before:
                found.append(f"{where}: failed before any of its dependencies did")
                continue
            root[i] = root[before[0]]
            origin = run.futures[root[i]]
            names = {run.futures[p].name for p in before}
            if not isinstance(error, DependencyFailureError):
                found.append(f"{where}: failed with {error!r}, not DependencyFailureError")
            elif (error.root_task != task_name(origin) or error.root_cause is not
                  origin.exception() or error.__cause__ is not error.root_cause or
                  not error.failed_dependencies or not set(error.failed_dependencies) <= names):
                found.append(f"{where}: root_task={error.root_task!r}, root_cause="
                             f"{error.root_cause!r}, failed_dependencies="
                             f"{error.failed_dependencies}; expected the failure of node "
                             f"{root[i]} ({task_name(origin)}: {origin.exception()!r}), "
                             f"through one of nodes {before} ({names})")
    found += inner_problems(graph, expected, run)
    return found


def inner_problems(graph: list[Node], expected: Expected, run: Run) -> list[str]:
    """The tasks blocks called: a step after the one that raised fails with its error."""
    found = []
    for node in graph:
        if not node.is_block or expected.status[node.index] not in ("ok", "raised"):
            continue
        raised = None
        for step in range(len(node.inner_fails)):
            future = run.inner.get((node.index, step))
            where = f"block {node.index} step {step}"
            if future is None or not future.done():
                found.append(f"{where}: {'never called' if future is None else 'pending'}")
                continue
            if future.cancelled():
                found.append(f"{where}: cancelled")
            elif raised is not None:
                error = future.exception()
                if (not isinstance(error, DependencyFailureError)
                        or error.root_cause is not raised.exception()):
                    found.append(f"{where}: {error!r}, not the failure of {raised!r}")
            elif node.inner_fails[step]:
                raised = future
                if not isinstance(future.exception(), NodeError):
                    found.append(f"{where}: {future.exception()!r}, not NodeError")
            elif future.exception() is not None:
                found.append(f"{where}: failed with {future.exception()!r}")
    return found


def report(seed: int, graph: list[Node], found: list[str]) -> str:
    return f"seed {seed}:\n" + "\n".join(found) + "\ngraph:\n" + describe(graph)


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_future_settles_once_with_the_reference_outcome(
        mode: str, seed: int, tmp_path: Path) -> None:
    graph = random_graph(random.Random(seed), SIZES[mode])
    expected = evaluate(graph)
    assert {"ok", "raised", "skipped"} <= set(expected.status.values()), describe(graph)
    markers = tmp_path / "markers"
    markers.mkdir()
    before = asyncio.all_tasks()
    async with WorkflowEngine.create(backend=make_backend(mode), work_dir=tmp_path) as flow:
        run = build(flow, graph, markers)
        await settle(run.futures.values())
        await settle(run.inner.values())
        assert flow._records == {}, flow._records
    assert asyncio.all_tasks() - before == set()
    found = problems(graph, expected, run)
    # Counted after shutdown: no worker can still be running a body. A body whose ancestors
    # all succeeded ran exactly once; one with a failed ancestor never ran.
    if runs(markers) != expected.runs:
        found.append(f"body runs by salt {dict(runs(markers))} != {dict(expected.runs)}")
    assert not found, report(seed, graph, found)


@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelling_right_after_building_reaches_every_descendant(
        mode: str, seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    graph = random_graph(rng, SIZES[mode])
    chosen = rng.sample(range(len(graph)), max(1, len(graph) // 6))
    # The rule (concepts.md "Cancellation", _engine.py _finish): a task settles once, on the
    # first terminal event of a dependency; a cancelled one cancels it, a failed one fails it
    # with DependencyFailureError. Cancelling before any body ran comes before every failure,
    # so each descendant of a cancelled node is cancelled.
    expected = evaluate(graph, frozenset(chosen))
    markers = tmp_path / "markers"
    markers.mkdir()
    before = asyncio.all_tasks()
    async with WorkflowEngine.create(backend=make_backend(mode), work_dir=tmp_path) as flow:
        run = build(flow, graph, markers)
        by_test: set[int] = set()
        for index in chosen:
            future = run.futures[index]
            already = future.done()  # cancelled with an ancestor chosen earlier
            assert future.cancel() is not already, (index, future)
            if not already:
                by_test.add(index)
        await settle(run.futures.values())
        await settle(run.inner.values())
        assert flow._records == {}, flow._records
    assert asyncio.all_tasks() - before == set()
    found = problems(graph, expected, run)
    for node in graph:  # one cancelled with a dependency names a cancelled dependency
        future = run.futures[node.index]
        if node.index in by_test or not future.cancelled():
            continue
        with pytest.raises(asyncio.CancelledError) as cancel:
            future.result()
        message = re.fullmatch(r"its dependency '\w+' \((\S+)\) was cancelled",
                               str(cancel.value))
        cancelled_parents = {run.futures[p].uid for p in node.parents
                             if expected.status[p] == "cancelled"}
        if message is None or message[1] not in cancelled_parents:
            found.append(f"node {node.index}: cancelled with {str(cancel.value)!r}, not "
                         f"naming one of its cancelled dependencies {cancelled_parents}")
    # A cancelled task never reached a worker: no cancelled body ran.
    if runs(markers) != expected.runs:
        found.append(f"body runs by salt {dict(runs(markers))} != {dict(expected.runs)}")
    assert not found, report(seed, graph, found) + f"\ncancelled: {chosen}"
