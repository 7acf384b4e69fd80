"""Random task graphs, a plain reference evaluation of them, and the checks between the two.

A graph is a list of :class:`Node`: function tasks (sync and ``async def``) whose arguments are
earlier nodes' futures (fan-in 0..3, a future passed twice, futures nested in lists, tuples
and dicts, keyword arguments), and blocks that call a chain of tasks and await them. Faults
are part of the description: a node raises, fails its first attempt under ``retries=1``, or
hangs past its ``timeout=``; a test may also cancel nodes, at once or when another node
settles. :func:`build` submits a graph through the public API, :func:`evaluate` says in plain
Python what every future must hold, and :func:`problems` lists every difference.

Node ``i`` is drawn from a random generator seeded by ``(seed, i)`` and depends only on the
nodes before it, so the graph of size ``n`` is a prefix of the graph of size ``n + 1``:
Hypothesis shrinks a failing graph by its size and keeps the nodes that remain.

Every body leaves one marker file per run (per attempt), in every mode: bodies in worker
processes cannot touch a counter of the test's. Count them once the engine is shut down.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from asyncflow import DependencyFailureError, TaskFuture, TaskTimeoutError, WorkflowEngine
from asyncflow.retries import current_attempt

WINDOW = 6  # dependencies come from the WINDOW nodes before: deep graphs, not flat ones
MAX_FAN_IN = 3
MODULUS = 1_000_003
TIMEOUT = 0.25  # seconds: the timeout= of a hanging node
HANG = 60.0  # seconds a hanging node would sleep if its timeout were not enforced
DRY_OUTPUT = "Dummy Output"  # what every task of a backend that runs no body returns


class NodeError(Exception):
    """What a failing node raises; its argument is the node's salt."""


@dataclass(frozen=True)
class Ref:
    """Node ``index``'s future in a node's arguments (its value in the reference)."""

    index: int


@dataclass(frozen=True)
class Rates:
    """How often a node is drawn each way (probabilities): its faults, and the shape."""

    roots: float = 0.25  # depends on nothing: lower is deeper (failures spread further)
    raises: float = 0.08
    flaky: float = 0.04  # fails its first attempt, succeeds on the retry
    hangs: float = 0.0  # sleeps past its timeout=: only where timeouts are enforced
    blocks: float = 0.15


@dataclass(frozen=True)
class Node:
    index: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    kind: str = "task"  # "task", "async" (an async def task) or "block"
    fault: str = ""  # a task: "raise", "flaky" or "hang"; "" runs clean
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


def random_node(seed: int, i: int, rates: Rates) -> Node:
    rng = random.Random(f"{seed}:{i}")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    earlier = range(max(0, i - WINDOW), i)
    fan_in = 0 if rng.random() < rates.roots else rng.randint(1, MAX_FAN_IN)
    for parent in rng.sample(earlier, min(len(earlier), fan_in)):
        ref = Ref(parent)
        form = rng.choice(("plain", "twice", "list", "tuple", "dict", "keyword"))
        if form == "plain":
            args.append(ref)
        elif form == "twice":  # one dependency, two arguments
            args += [ref, ref]
        elif form == "list":
            args.append([rng.randint(0, 9), ref])
        elif form == "tuple":
            args.append((ref, [rng.randint(0, 9), {"deep": ref}]))
        elif form == "dict":
            args.append({"constant": rng.randint(0, 9), "upstream": ref})
        else:
            kwargs[f"from_{parent}"] = ref
    if rng.random() < 0.3:
        args.append(rng.randint(0, 99))
    draw = rng.random()
    if rng.random() < rates.blocks:
        fails = [False] * rng.randint(1, 3)
        if draw < rates.raises:
            fails[rng.randrange(len(fails))] = True
        return Node(i, tuple(args), kwargs, kind="block", inner_fails=tuple(fails))
    fault = ("raise" if draw < rates.raises else
             "flaky" if draw < rates.raises + rates.flaky else
             "hang" if draw < rates.raises + rates.flaky + rates.hangs else "")
    kind = "async" if fault == "hang" or rng.random() < 0.3 else "task"
    return Node(i, tuple(args), kwargs, kind=kind, fault=fault)


def random_graph(seed: int, size: int, rates: Rates = Rates()) -> list[Node]:
    return [random_node(seed, i, rates) for i in range(size)]


def describe(graph: list[Node]) -> str:
    lines = []
    for node in graph:
        kind = f"block{list(node.inner_fails)}" if node.kind == "block" else node.kind
        lines.append(f"  {node.index}: {kind} {node.fault.upper()} args={node.args} "
                     f"kwargs={dict(node.kwargs)}")
    return "\n".join(lines)


# -- what the bodies compute: the engine runs these, the reference evaluation too ----------


def flatten(value: Any) -> list[int]:
    if isinstance(value, Mapping):
        value = [value[key] for key in sorted(value)]
    if isinstance(value, tuple | list):
        return [number for item in value for number in flatten(item)]
    return [len(value) if isinstance(value, str) else value]  # a dry run's output counts too


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


def node_body(salt: int, markers: str, fault: str, *inputs: Any, **named: Any) -> int:
    mark(markers, str(salt))
    if fault == "raise" or (fault == "flaky" and current_attempt() == 1):
        raise NodeError(salt)
    return combine(salt, inputs, named)


async def async_node_body(salt: int, markers: str, fault: str, *inputs: Any,
                          **named: Any) -> int:
    if fault == "hang":
        mark(markers, str(salt))
        await asyncio.sleep(HANG)
    return node_body(salt, markers, fault, *inputs, **named)


# -- the reference evaluation ---------------------------------------------------------------


@dataclass
class Expected:
    status: dict[int, str]  # "ok", "raised", "skipped" (an ancestor failed) or "cancelled"
    values: dict[int, int]
    first_inner_failure: dict[int, int]  # a raising block: the step of its chain that raised
    runs: Counter[str]  # marker label -> runs: once per attempt of each body that must run
    executes: bool = True  # False: no body is called, every task returns DRY_OUTPUT


def evaluate(graph: list[Node], cancelled: frozenset[int] = frozenset(),
             executes: bool = True) -> Expected:
    """What the engine must produce when the nodes in ``cancelled`` are cancelled before
    anything ran: cancellation then reaches every descendant before any failure can.

    ``executes=False`` is a backend that calls no body (``noop``, a dry run): every task
    returns :data:`DRY_OUTPUT`, only blocks (which run on the engine's loop) leave markers."""
    expected = Expected({}, {}, {}, Counter(), executes)
    status, values = expected.status, expected.values
    for node in graph:
        parent_status = {status[p] for p in node.parents}
        if node.index in cancelled or "cancelled" in parent_status:
            status[node.index] = "cancelled"
            continue
        if parent_status - {"ok"}:
            status[node.index] = "skipped"
            continue
        if not executes:
            _evaluate_dry(node, expected)
            continue
        expected.runs[str(node.salt)] += 2 if node.fault == "flaky" else 1
        inputs = substitute(node.args, values.__getitem__)
        named = substitute(node.kwargs, values.__getitem__)
        if node.kind != "block":
            status[node.index] = "raised" if node.fault in ("raise", "hang") else "ok"
            if status[node.index] == "ok":
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


def _evaluate_dry(node: Node, expected: Expected) -> None:
    expected.status[node.index] = "ok"
    if node.kind != "block":
        expected.values[node.index] = DRY_OUTPUT  # type: ignore[assignment]
        return
    expected.runs[str(node.salt)] += 1
    expected.values[node.index] = combine(node.salt, [DRY_OUTPUT] * len(node.inner_fails), {})


def descendants(graph: list[Node], roots: Iterable[int]) -> set[int]:
    """``roots`` and every node that depends on one of them, directly or not."""
    found = set(roots)
    for node in graph:  # nodes come in order: parents before children
        if node.parents & found:
            found.add(node.index)
    return found


# -- running a graph on the engine ----------------------------------------------------------


@dataclass
class Run:
    futures: dict[int, TaskFuture[int]] = field(default_factory=dict)
    inner: dict[tuple[int, int], TaskFuture[int]] = field(default_factory=dict)
    settled: list[str] = field(default_factory=list)  # uids in the order they settled


def build(flow: WorkflowEngine, graph: list[Node], markers: Path,
          cancel_when: Mapping[int, Iterable[int]] | None = None) -> Run:
    """Submit ``graph``; ``cancel_when[k]`` lists the nodes to cancel when node k settles."""
    run = Run()
    task = flow.function_task(node_body)
    tasks = {"task": task, "async": flow.function_task(async_node_body)}
    flaky = {"task": flow.function_task(retries=1)(node_body),
             "async": flow.function_task(retries=1)(async_node_body)}
    hang = flow.function_task(timeout=TIMEOUT)(async_node_body)
    cancel_when = cancel_when or {}

    @flow.block
    async def chain(index: int, salt: int, fails: tuple[bool, ...], *inputs: Any,
                    **named: Any) -> int:
        mark(str(markers), str(salt))
        base = combine(salt, inputs, named)
        previous: int | TaskFuture[int] = base
        steps = []
        for step, step_fails in enumerate(fails):
            # The first step gets a value, each later one the future of the step before.
            future = task(inner_salt(salt, step), str(markers), "raise" if step_fails else "",
                          previous, base)
            run.inner[index, step] = previous = future
            steps.append(future)
        return combine(salt, [await step for step in steps], {})

    def settled(future: asyncio.Future[Any], targets: tuple[int, ...]) -> None:
        run.settled.append(future.uid)  # type: ignore[attr-defined]
        for target in targets:
            run.futures[target].cancel()

    for node in graph:
        args = substitute(node.args, run.futures.__getitem__)
        kwargs = substitute(node.kwargs, run.futures.__getitem__)
        if node.kind == "block":
            future = chain(node.index, node.salt, node.inner_fails, *args, **kwargs)
        else:
            call = (hang if node.fault == "hang" else
                    flaky[node.kind] if node.fault == "flaky" else tasks[node.kind])
            future = call(node.salt, str(markers), node.fault, *args, **kwargs)
        run.futures[node.index] = future
    # Done callbacks run in the order the futures settle: the order the engine saw.
    for node in graph:
        targets = tuple(cancel_when.get(node.index, ()))
        run.futures[node.index].add_done_callback(functools.partial(settled, targets=targets))
    return run


async def settle(futures: Iterable[asyncio.Future[Any]], limit: float) -> list[str]:
    """Wait for every future, up to ``limit`` seconds; name those still pending."""
    futures = list(futures)
    if not futures:
        return []
    _, pending = await asyncio.wait(futures, timeout=limit)
    return [f"pending after {limit}s: {future!r}" for future in pending]


def runs(markers: Path) -> Counter[str]:
    return Counter(name.split("@")[0] for name in os.listdir(markers))


def task_name(future: TaskFuture[Any]) -> str:
    return f"{future.name!r} ({future.uid})"


# -- the checks -----------------------------------------------------------------------------


def problems(graph: list[Node], expected: Expected, run: Run, body_runs: Counter[str],
             loose: Collection[int] = ()) -> list[str]:
    """Every way the run differs from the reference evaluation.

    ``loose`` nodes were cancelled at a moment of the run's choosing (a node of theirs had
    settled): each may be cancelled, or else it holds its reference outcome; its bodies ran
    at most as often as the reference says."""
    found = []
    order = {uid: position for position, uid in enumerate(run.settled)}
    root: dict[int, int] = {}  # a failed node -> the node whose exception it carries
    for node in graph:
        i, future, status = node.index, run.futures[node.index], expected.status[node.index]
        where = f"node {i} ({future.uid}, expected {status})"
        if not future.done():
            found.append(f"{where}: pending")
            continue
        if status == "cancelled" or (i in loose and future.cancelled()):
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
            if node.kind == "block":  # it fails with the exception of the step that raised
                step = expected.first_inner_failure[i]
                if error is not run.inner[i, step].exception():
                    found.append(f"{where}: {error!r} is not step {step}'s exception")
            elif node.fault == "hang":
                if not isinstance(error, TaskTimeoutError):
                    found.append(f"{where}: failed with {error!r}, not TaskTimeoutError")
            elif type(error) is not NodeError or error.args != (node.salt,):
                found.append(f"{where}: failed with {error!r}, not NodeError({node.salt})")
        elif not isinstance(error, DependencyFailureError):
            found.append(f"{where}: failed with {error!r}, not DependencyFailureError")
        elif i not in loose:  # it carries the failure that reached it first
            found += _carries_its_root(graph, expected, run, node, error, order, root)
    found += _inner_problems(graph, expected, run, loose)
    found += _run_counts(graph, expected, run, body_runs, loose)
    return found


def _carries_its_root(graph: list[Node], expected: Expected, run: Run, node: Node,
                      error: DependencyFailureError, order: dict[str, int],
                      root: dict[int, int]) -> list[str]:
    # It fails while that failure spreads from the task that raised, so every failed
    # dependency settled before it carries that root.
    future = run.futures[node.index]
    before = [p for p in node.parents if expected.status[p] in ("raised", "skipped")
              and order[run.futures[p].uid] < order[future.uid]]
    where = f"node {node.index} ({future.uid}, expected skipped)"
    if not before or before[0] not in root:
        return [f"{where}: failed before any of its dependencies did"]
    root[node.index] = root[before[0]]
    origin = run.futures[root[node.index]]
    names = {run.futures[p].name for p in before}
    if (error.root_task != task_name(origin) or error.root_cause is not origin.exception()
            or error.__cause__ is not error.root_cause or not error.failed_dependencies
            or not set(error.failed_dependencies) <= names):
        return [f"{where}: root_task={error.root_task!r}, root_cause={error.root_cause!r}, "
                f"failed_dependencies={error.failed_dependencies}; expected the failure of "
                f"node {root[node.index]} ({task_name(origin)}: {origin.exception()!r}), "
                f"through one of nodes {before} ({names})"]
    return []


def _inner_problems(graph: list[Node], expected: Expected, run: Run,
                    loose: Collection[int]) -> list[str]:
    """The tasks blocks called: a step after the one that raised fails with its error."""
    found = []
    for node in graph:
        if (node.kind != "block" or expected.status[node.index] not in ("ok", "raised")
                or (node.index in loose and run.futures[node.index].cancelled())):
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
            elif node.inner_fails[step] and expected.executes:
                raised = future
                if not isinstance(future.exception(), NodeError):
                    found.append(f"{where}: {future.exception()!r}, not NodeError")
            elif future.exception() is not None:
                found.append(f"{where}: failed with {future.exception()!r}")
    return found


def _run_counts(graph: list[Node], expected: Expected, run: Run, body_runs: Counter[str],
                loose: Collection[int]) -> list[str]:
    """A body whose ancestors succeeded ran once per attempt; any other never ran. A loose
    node cancelled while it ran may have run, never more often than that."""
    found = []
    for node in graph:
        labels = [str(node.salt)]
        if node.kind == "block":
            labels += [str(inner_salt(node.salt, step)) for step in range(len(node.inner_fails))]
        at_most = node.index in loose and run.futures[node.index].cancelled()
        for label in labels:
            want, got = expected.runs[label], body_runs[label]
            if got > want or (got != want and not at_most):
                found.append(f"node {node.index}: body {label} ran {got} times, not {want}")
    return found


# -- one whole check: a graph, its faults, a backend ----------------------------------------


@dataclass(frozen=True)
class Plan:
    """One random graph and when to cancel what: what Hypothesis draws and shrinks."""

    size: int
    seed: int
    rates: Rates = Rates()
    cancel_now: tuple[int, ...] = ()  # cancelled right after the graph is built
    cancel_when: tuple[tuple[int, int], ...] = ()  # (k, target): cancel target when k settles

    def graph(self) -> list[Node]:
        return random_graph(self.seed, self.size, self.rates)


async def check_plan(plan: Plan, create: Callable[[], Any], work: str | Path, *,
                     executes: bool = True, limit: float = 60.0) -> list[str]:
    """Run ``plan`` on an engine from ``create()`` (an awaitable engine, e.g.
    ``WorkflowEngine.create(...)``) and return every problem, the engine shut down. Markers
    go to ``work/markers``. ``executes=False``: the backend calls no body (see
    :func:`evaluate`)."""
    markers = Path(work, "markers")
    os.makedirs(markers)
    graph = plan.graph()
    now = frozenset(i for i in plan.cancel_now if i < plan.size)
    later = [(k, t) for k, t in plan.cancel_when if k < plan.size and t < plan.size]
    expected = evaluate(graph, now, executes)
    loose = descendants(graph, (t for _, t in later)) - {
        i for i, status in expected.status.items() if status == "cancelled"}
    cancel_when: dict[int, list[int]] = {}
    for k, target in later:
        cancel_when.setdefault(k, []).append(target)
    before = asyncio.all_tasks()
    found: list[str] = []
    flow = await create()
    try:
        run = build(flow, graph, markers, cancel_when)
        for index in sorted(now):
            run.futures[index].cancel()
        found += await settle(run.futures.values(), limit)
        found += await settle(run.inner.values(), limit)
    finally:
        await flow.shutdown()
    left = asyncio.all_tasks() - before
    if left:
        found.append(f"asyncio tasks left after shutdown: {left}")
    found += problems(graph, expected, run, runs(markers), loose)
    return found


def report(plan: Plan, found: list[str], shown: int = 40) -> str:
    """The problems of ``plan``, the first ``shown`` of them, and the graph if it is small."""
    text = f"{plan}: {len(found)} problems\n" + "\n".join(found[:shown])
    if plan.size <= 60:
        text += "\ngraph:\n" + describe(plan.graph())
    return text


# -- Hypothesis: the strategy and the two profiles ------------------------------------------

# ``ci`` (the default) keeps the default test run short and the same on every run; ``chaos``
# (``nox -s chaos`` sets ASYNCFLOW_GRAPHS=chaos) tries many more graphs, and larger ones.
# Function-scoped fixtures are fine: the tests take only a mode name and autouse checks that
# wrap all examples at once; each example builds its own engine and folders.
PROFILE = os.environ.get("ASYNCFLOW_GRAPHS", "ci")
_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=6, derandomize=True, database=None,
                          deadline=None, print_blob=True, suppress_health_check=_HEALTH)
settings.register_profile("chaos", max_examples=40, deadline=None, print_blob=True,
                          suppress_health_check=_HEALTH)


def profile() -> settings:
    """The Hypothesis settings of the graph tests (see PROFILE)."""
    return settings.get_profile(PROFILE)


def plans(max_size: int, rates: Rates = Rates(), cancels: int = 3) -> st.SearchStrategy[Plan]:
    """Graphs of 1..``max_size`` nodes. Fault rates, cancellations and the size all shrink:
    towards no faults, no cancellation and the smallest prefix that still fails."""

    @st.composite
    def draw(draw: st.DrawFn) -> Plan:
        size = draw(st.integers(1, max_size))
        seed = draw(st.integers(0, 2**16))
        scale = draw(st.sampled_from((0.0, 0.5, 1.0, 2.0)))
        roots = draw(st.sampled_from((rates.roots, 0.02)))
        drawn = Rates(roots, rates.raises * scale, rates.flaky * scale, rates.hangs * scale,
                      rates.blocks)
        index = st.integers(0, size - 1)
        now = draw(st.lists(index, max_size=cancels))
        when = draw(st.lists(st.tuples(index, index), max_size=cancels))
        return Plan(size, seed, drawn, tuple(now), tuple(when))

    return draw()


def threads() -> set[threading.Thread]:
    return set(threading.enumerate())
