"""Fixtures of the Dask tests: a LocalCluster shared by a module, and an Inbox for reports
from task bodies in other processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_support import Inbox

# tests/slurm need a Slurm cluster: `nox -s hpc` starts one (scripts/slurm-cluster.sh) and runs
# them with ASYNCFLOW_SLURM_TESTS=1; everywhere else they are not collected (not skipped).
collect_ignore = [] if os.environ.get("ASYNCFLOW_SLURM_TESTS") else ["slurm"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A LocalCluster of two worker processes, two threads each, running in its own thread:
    each test connects a fresh backend to it by address."""
    from distributed import LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=2, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                         local_directory=str(tmp_path_factory.mktemp("dask")))
    try:
        yield local
    finally:
        local.close(timeout=30)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    async with Inbox() as reports:
        yield reports


@pytest.fixture
def bodies_dir() -> Path:
    return Path(__file__).parent
