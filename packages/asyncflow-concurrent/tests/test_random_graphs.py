"""Random graphs, seeded: the engine's promises on many shapes at once, on every mode.

The graphs, their reference evaluation and the checks come from asyncflow.testing.graphs
(test_graph_properties.py draws them with Hypothesis); these fixed seeds also look inside:
the engine's tables are empty once everything settled, and a task cancelled because a
dependency was cancelled names that dependency.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from concurrent_support import LIMIT, make_backend

from asyncflow import WorkflowEngine
from asyncflow.testing.graphs import (
    Node,
    Rates,
    build,
    describe,
    evaluate,
    problems,
    random_graph,
    runs,
)

SEEDS = (3, 11, 19, 42, 77, 2024)
# Process mode pays a round trip to a worker per task: small graphs keep the file fast.
SIZES = {"loop": 60, "threads": 60, "processes": 24}
RATES = Rates(raises=0.12, flaky=0.0)


def report(seed: int, graph: list[Node], found: list[str]) -> str:
    return f"seed {seed}:\n" + "\n".join(found) + "\ngraph:\n" + describe(graph)


async def settle(futures: list[asyncio.Future[int]]) -> None:
    if futures:
        _, pending = await asyncio.wait(futures, timeout=LIMIT)
        assert not pending, f"futures still pending after {LIMIT}s: {pending}"


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_future_settles_once_with_the_reference_outcome(
        mode: str, seed: int, tmp_path: Path) -> None:
    graph = random_graph(seed, SIZES[mode], RATES)
    expected = evaluate(graph)
    assert {"ok", "raised", "skipped"} <= set(expected.status.values())
    markers = tmp_path / "markers"
    markers.mkdir()
    before = asyncio.all_tasks()
    async with WorkflowEngine.create(backend=make_backend(mode), work_dir=tmp_path) as flow:
        run = build(flow, graph, markers)
        await settle([*run.futures.values(), *run.inner.values()])
        assert flow._records == {}, flow._records  # finished tasks left the engine's tables
    assert asyncio.all_tasks() - before == set()
    # Counted after shutdown: no worker can still be running a body.
    found = problems(graph, expected, run, runs(markers))
    assert not found, report(seed, graph, found)


@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelling_right_after_building_reaches_every_descendant(
        mode: str, seed: int, tmp_path: Path) -> None:
    graph = random_graph(seed, SIZES[mode], RATES)
    chosen = [node.index for node in graph if node.index % 6 == seed % 6]
    # The rule (concepts.md "Cancellation", _engine.py _finish): a task settles once, on the
    # first terminal event of a dependency; a cancelled one cancels it, a failed one fails it
    # with DependencyFailureError. Cancelling before any body ran comes before every failure,
    # so each descendant of a cancelled node is cancelled.
    expected = evaluate(graph, frozenset(chosen))
    markers = tmp_path / "markers"
    markers.mkdir()
    async with WorkflowEngine.create(backend=make_backend(mode), work_dir=tmp_path) as flow:
        run = build(flow, graph, markers)
        by_test: set[int] = set()
        for index in chosen:
            future = run.futures[index]
            already = future.done()  # cancelled with an ancestor chosen earlier
            assert future.cancel() is not already, (index, future)
            if not already:
                by_test.add(index)
        await settle([*run.futures.values(), *run.inner.values()])
        assert flow._records == {}, flow._records
    found = problems(graph, expected, run, runs(markers))
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
    assert not found, report(seed, graph, found) + f"\ncancelled: {chosen}"
