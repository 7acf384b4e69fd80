"""Where the backend's tasks run: a client on an existing cluster, or a LocalCluster we own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, LocalCluster, Worker

from asyncflow.errors import BackendError

log = logging.getLogger("asyncflow.dask")

CLOSE_TIMEOUT = 20.0  # seconds; Dask kills worker processes that outlive its own 4-5 s grace


@dataclass
class Connection:
    """The client the backend submits through, and what it must release at shutdown."""

    client: Any  # a distributed.Client (partly typed upstream)
    address: str
    """The scheduler's address, for messages."""
    owns_client: bool
    cluster: Any = None
    """The LocalCluster the backend started, closed with it; ``None`` for a given cluster."""
    scratch: str | None = None
    """The LocalCluster's ``local_directory``, removed at shutdown."""
    kind: str | None = None
    """The batch system of a jobqueue cluster the backend started (``"slurm"``...)."""

    def job_of(self, worker: str | None) -> str | None:
        """The batch job of a worker (by name) of a jobqueue cluster: ``"Slurm job 42"``."""
        if self.kind is None:
            return None
        from asyncflow_dask import _jobqueue

        return _jobqueue.job_of(self.cluster, self.kind, worker)

    async def close(self) -> None:
        """Close what the backend created; leave a given client or cluster running."""
        try:
            if self.owns_client:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.client.close(timeout=CLOSE_TIMEOUT),
                                           CLOSE_TIMEOUT)
            if self.cluster is not None:
                for worker in list(self.cluster.workers.values()):
                    if isinstance(worker, Worker):  # a thread worker (processes=False): don't
                        # wait for bodies in its threads, which cannot be interrupted
                        await worker.close(executor_wait=False)
                if self.kind is not None:
                    from asyncflow_dask import _jobqueue

                    await _jobqueue.close(self.cluster, CLOSE_TIMEOUT)
                else:
                    await asyncio.wait_for(self.cluster.close(timeout=CLOSE_TIMEOUT),
                                           CLOSE_TIMEOUT)
        finally:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)


async def connect(*, address: str | None, cluster: Any, client: Any,
                  local: Mapping[str, Any], config: Mapping[str, Any],
                  connect_timeout: float | None, jobs: int | None = None,
                  adapt: Mapping[str, int] | None = None) -> Connection:
    """A connection to the cluster the options name (exactly one of them, or a new
    LocalCluster built from ``local``), on the running event loop. A ``cluster`` given by
    kind (``"slurm"``) is a jobqueue cluster built from ``local``, with ``jobs`` or
    ``adapt``."""
    if client is not None:
        if not getattr(client, "asynchronous", False):
            raise TypeError("dask: client= must be an asynchronous distributed.Client created "
                            "on the engine's event loop: Client(..., asynchronous=True)")
        if client.status != "running":
            await client
        return Connection(client, client.scheduler.address, owns_client=False)
    with dask.config.set(dict(config)):
        if isinstance(cluster, str):
            return await _batch_cluster(cluster, local, jobs, adapt, connect_timeout)
        if cluster is not None:  # by address: a synchronous cluster runs another loop
            address = cluster.scheduler_address
            return Connection(await _client(address, connect_timeout), address,
                              owns_client=True)
        if address is not None:
            return Connection(await _client(address, connect_timeout), address,
                              owns_client=True)
        return await _local_cluster(local, connect_timeout)


async def _client(target: Any, connect_timeout: float | None) -> Any:
    where = target if isinstance(target, str) else getattr(target, "scheduler_address", target)
    timeout = {} if connect_timeout is None else {"timeout": connect_timeout}
    try:
        client = await Client(target, asynchronous=True,  # type: ignore[no-untyped-call]
                              set_as_default=False, **timeout)
    except (OSError, TimeoutError) as exc:
        raise BackendError(f"dask: cannot connect to the Dask scheduler at {where}: "
                           f"{exc}") from exc
    return client


async def _batch_cluster(kind: str, options: Mapping[str, Any], jobs: int | None,
                         adapt: Mapping[str, int] | None,
                         connect_timeout: float | None) -> Connection:
    from asyncflow_dask import _jobqueue

    cluster = await _jobqueue.start(kind, options, jobs=jobs, adapt=adapt)
    try:
        client = await _client(cluster, connect_timeout)
    except BaseException:
        await cluster.close()
        raise
    log.debug("started %r", cluster)
    return Connection(client, cluster.scheduler_address, owns_client=True, cluster=cluster,
                      kind=kind)


async def _local_cluster(options: Mapping[str, Any],
                         connect_timeout: float | None) -> Connection:
    scratch = tempfile.mkdtemp(prefix="asyncflow-dask-")
    settings: dict[str, Any] = {"local_directory": scratch}
    if options.get("processes", True):  # thread workers talk in-process (inproc://), no ports
        settings["host"] = "127.0.0.1"
    settings.update(options, asynchronous=True)
    if "dashboard_address" not in options:
        # The scheduler serves HTTP even without its dashboard, by default on port 8787 of
        # every interface; a free port on 127.0.0.1 never collides with another cluster.
        settings["dashboard_address"] = "127.0.0.1:0"
        settings["scheduler_kwargs"] = {"dashboard": False, **options.get("scheduler_kwargs", {})}
    cluster: Any = None
    try:
        cluster = await LocalCluster(**settings)  # type: ignore[no-untyped-call]
        client = await _client(cluster, connect_timeout)
    except BaseException:
        if cluster is not None:
            await cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    log.debug("started %r in %s", cluster, scratch)
    return Connection(client, cluster.scheduler_address, owns_client=True, cluster=cluster,
                      scratch=scratch)
