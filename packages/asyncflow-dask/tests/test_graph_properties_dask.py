"""Random graphs on a real LocalCluster (asyncflow.testing.graphs), against the reference
evaluation: every future settles, bodies run once per attempt (marker files, the workers
being other processes), values are right. No hanging tasks: a Dask timeout fails the task
but cannot stop a body in a worker thread, which would hold the shared cluster's threads.

The graphs are smaller than on the concurrent backend: each task is a round trip through the
scheduler (about 1-2 ms here), and the engine's propagation, what large graphs test, is the
same code whatever the backend; the large graphs run on noop and concurrent.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from hypothesis import given

from asyncflow import WorkflowEngine
from asyncflow.testing.graphs import PROFILE, Plan, Rates, check_plan, plans, profile, report
from asyncflow_dask import DaskExecutionBackend

MAX_SIZE = 500 if PROFILE == "chaos" else 60


async def check(cluster: Any, plan: Plan) -> None:
    with tempfile.TemporaryDirectory() as work:
        found = await check_plan(plan, lambda: WorkflowEngine.create(
            backend=DaskExecutionBackend(address=cluster.scheduler_address)), work)
    assert not found, report(plan, found)


@pytest.mark.timeout(900)
@given(plan=plans(MAX_SIZE))
@profile()
async def test_random_graphs_match_the_reference(cluster: Any, plan: Plan) -> None:
    await check(cluster, plan)


@pytest.mark.timeout(900)
async def test_a_deep_graph_with_every_fault_matches_the_reference(cluster: Any) -> None:
    size = 1_000 if PROFILE == "chaos" else 300
    rates = Rates(roots=0.02, raises=0.02, flaky=0.02)
    await check(cluster, Plan(size, seed=15, rates=rates, cancel_now=(size * 9 // 10,),
                              cancel_when=((size // 10, size * 3 // 4),)))
