"""Issue 12: RADICAL AsyncFlow's way of building the Dask backend, and a command's stdout,
stderr and exit code coming back from a worker process to the task's future."""

from __future__ import annotations

from typing import Any

import pytest
import radical.asyncflow as ra
from radical.asyncflow import DaskExecutionBackend, WorkflowEngine

pytestmark = pytest.mark.timeout(120)


async def test_upstreams_resources_dict_starts_a_local_cluster() -> None:
    backend = DaskExecutionBackend({"n_workers": 1, "threads_per_worker": 1,
                                    "processes": False}, name="local_dask")
    flow = await WorkflowEngine.create(backend=backend)
    try:
        assert list(flow.backends) == ["local_dask"]

        @flow.function_task
        def threads() -> int:
            from distributed import get_worker

            return int(get_worker().state.nthreads)

        @flow.function_task
        async def double(x: int) -> int:
            return 2 * x

        assert await threads() == 1, "threads_per_worker from the dict"
        assert await double(double(2)) == 8
    finally:
        await flow.shutdown()


def test_a_key_that_is_not_an_option_is_named() -> None:
    with pytest.raises(ra.BackendOptionError, match=r"'n_worker' \(did you mean "
                                                    r"'n_workers'\?\)"):
        DaskExecutionBackend({"n_worker": 2, "threads_per_worker": 1})


async def test_two_named_dask_backends_on_one_cluster(cluster: Any, tmp_path: Any) -> None:
    cpu = DaskExecutionBackend({"address": cluster.scheduler_address}, name="cpu")
    io = DaskExecutionBackend({"address": cluster.scheduler_address}, name="io")
    flow = await WorkflowEngine.create(backend=[cpu, io], work_dir=tmp_path)
    try:
        @flow.executable_task(backend="io")
        async def speak() -> str:
            return "sh -c 'echo said; echo warned >&2'"

        @flow.executable_task
        async def fail() -> str:
            return "sh -c 'echo partial; echo broken >&2; exit 5'"

        spoken = speak()
        assert await spoken == "said\n"
        assert (spoken.stdout, spoken.stderr, spoken.exit_code) == ("said\n", "warned\n", 0)
        failed = fail()
        with pytest.raises(RuntimeError, match="exited with code 5"):
            await failed
        assert (failed.stdout, failed.stderr, failed.exit_code) == ("partial\n", "broken\n", 5)
    finally:
        await flow.shutdown()
