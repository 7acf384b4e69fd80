"""Random graphs on ``noop``, which calls no body: the engine alone settles every future,
cancels every descendant of a cancelled task, runs every block once, and leaves no task.
Hypothesis draws the graphs (asyncflow.testing.graphs); ASYNCFLOW_GRAPHS=chaos draws more."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given

from asyncflow import WorkflowEngine
from asyncflow.testing.graphs import PROFILE, Plan, Rates, check_plan, plans, profile, report

MAX_SIZE = 5_000 if PROFILE == "chaos" else 500


async def check(plan: Plan) -> None:
    with tempfile.TemporaryDirectory() as work:
        found = await check_plan(plan, lambda: WorkflowEngine.create(backend="noop"), work,
                                 executes=False)
    assert not found, report(plan, found)


@pytest.mark.timeout(900)
@given(plan=plans(MAX_SIZE))
@profile()
async def test_random_graphs_settle_like_the_reference(plan: Plan) -> None:
    await check(plan)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("size", [1_000, 10_000])
async def test_cancelling_the_roots_of_a_deep_graph_cancels_all_of_it(size: int) -> None:
    # Today's engine cancels by recursion, a frame per level: 10,000 needs work lists.
    plan = Plan(size, seed=15, rates=Rates(roots=0.02), cancel_now=(0, 1, 2),
                cancel_when=((size // 2, size * 3 // 4),))
    await check(plan)
