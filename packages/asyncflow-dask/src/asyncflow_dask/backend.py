"""``DaskExecutionBackend``: tasks run on the workers of a Dask distributed cluster.

Each task attempt becomes one Dask task with a unique key (never ``pure``: two calls with
equal arguments are two tasks), submitted with one ``Client.map`` per group of a batch that
shares a body kind and placement. A small wrapper from :mod:`asyncflow_dask._worker` runs the
body on the worker and announces its start, which becomes the task's ``RUNNING`` report.

Results stay on the workers: a ``DONE`` report carries the Dask future as its ``ref``, the
engine keeps it with the task's future, and a later task on this backend gets the Dask
future as its argument, so Dask hands it the data worker to worker. The data lives as long
as the task's future does.

Each task in flight is watched by one asyncio task that awaits its Dask future; ``_inflight``
holds the entries until their one terminal report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncflow.backend import Capabilities, ExecutionBackend, TaskKind, TaskSpec, TaskUpdate
from asyncflow.errors import BackendError, TaskTimeoutError, WorkerLostError

if TYPE_CHECKING:
    from distributed import Future

    from asyncflow_dask._cluster import Connection

__all__ = ["DaskExecutionBackend"]

log = logging.getLogger("asyncflow.dask")

RELEASE_WAIT = 10.0  # seconds the shutdown waits for the cluster to forget our tasks
STOP_WAIT = 5.0  # seconds cancelled bodies' workers get to answer (a dead one never does)

_THREAD_NOTE = ("; its body keeps running in a Dask worker thread until it returns (Python "
                "threads cannot be interrupted)")


@dataclass(frozen=True, slots=True)
class _Call:
    spec: TaskSpec
    wrapper: str  # the name of a function of asyncflow_dask._worker
    key: str
    args: tuple[Any, ...]


@dataclass(slots=True)
class _InFlight:
    spec: TaskSpec
    future: Future[Any]
    worker: str | None = None  # the worker's address, once the body has started
    timer: asyncio.TimerHandle | None = None  # the deadline of a plain def body


class DaskExecutionBackend(ExecutionBackend):
    """Run tasks on a Dask distributed cluster.

    Where tasks run (give at most one of the first three):

    Args:
        address: A scheduler to connect to, e.g. ``"tcp://10.0.0.5:8786"``.
        cluster: A cluster object (``LocalCluster``, ``SLURMCluster``, ...), used as given and
            left running at shutdown; or a batch system by name (``"slurm"``, ``"pbs"``,
            ``"sge"``, ``"lsf"``, ``"htcondor"``, ``"oar"``, ``"moab"``): the backend then
            starts its workers as batch jobs through dask-jobqueue (``pip install
            'asyncflow-dask[jobqueue]'``), with ``cluster_options`` passed to the jobqueue
            cluster class (``cores``, ``memory``, ``queue``, ``walltime``...), and closes it,
            cancelling its jobs, at shutdown.
        jobs: With a batch system by name, how many worker jobs to submit (default 1).
        adapt: With a batch system by name, ``{"minimum": m, "maximum": n}``: let Dask scale
            between m and n worker jobs by load, instead of a fixed ``jobs``.
        client: An asynchronous ``distributed.Client`` created on the engine's event loop;
            used as given and left open at shutdown.
        n_workers: With none of the above, the backend starts a ``LocalCluster`` on
            127.0.0.1 (dashboard off, scratch space in a temporary folder) and closes it at
            shutdown; this and the next options configure it. Dask's defaults apply to
            options left out.
        threads_per_worker: Threads per worker process: how many tasks each runs at once.
        processes: ``True`` (Dask's default): workers are processes; ``False``: threads of
            this process.
        memory_limit: Per worker, e.g. ``"2GiB"``, or ``0`` for no limit.
        cluster_options: More ``LocalCluster`` keyword arguments, passed through.
        dask_config: Dask configuration applied while the cluster and client are created,
            e.g. ``{"distributed.scheduler.allowed-failures": 0}`` for a LocalCluster.
        connect_timeout: Seconds to wait for the scheduler (Dask's default when ``None``).
    """

    name = "dask"
    capabilities = Capabilities(
        function_tasks=True,
        executable_tasks=True,
        cancel_running=True,  # except plain def bodies, whose threads run on: see docs
        capture_stdio=True,  # files are written on the worker's file system
        timeouts=True,  # same exception
        resources=True,
        remote_workers=True,
    )

    def __init__(self, *, address: str | None = None, cluster: Any = None, client: Any = None,
                 n_workers: int | None = None, threads_per_worker: int | None = None,
                 processes: bool | None = None, memory_limit: str | float | None = None,
                 cluster_options: Mapping[str, Any] | None = None,
                 dask_config: Mapping[str, Any] | None = None,
                 connect_timeout: float | None = None, jobs: int | None = None,
                 adapt: Mapping[str, int] | None = None) -> None:
        super().__init__()
        _check_batch_options(cluster, jobs, adapt)
        given = [n for n, v in (("address", address), ("cluster", cluster), ("client", client))
                 if v is not None]
        local = {k: v for k, v in (("n_workers", n_workers),
                                   ("threads_per_worker", threads_per_worker),
                                   ("processes", processes), ("memory_limit", memory_limit))
                 if v is not None}
        twice = sorted(local.keys() & (cluster_options or {}).keys())
        if len(given) > 1:
            raise TypeError(f"{type(self).__name__}: give one of {' and '.join(given)}, not both")
        if isinstance(cluster, str):  # a batch system: cluster_options configure its jobs
            given.remove("cluster")
        if given and (local or cluster_options):
            raise TypeError(f"{type(self).__name__}: {sorted([*local, *(cluster_options or {})])}"
                            f" configure a LocalCluster the backend starts; they cannot be "
                            f"combined with {given[0]}=")
        if twice:
            raise TypeError(f"{type(self).__name__}: {twice} given both as options and in "
                            "cluster_options")
        if client is not None and dask_config:
            raise TypeError(f"{type(self).__name__}: dask_config= applies while the backend "
                            "creates its client; a given client= is already configured")
        self._address = address
        self._cluster = cluster
        self._client_given = client
        self._local = {**local, **(cluster_options or {})}
        self._dask_config = dict(dask_config or {})
        self._connect_timeout = connect_timeout
        self._jobs = jobs
        self._adapt = dict(adapt) if adapt is not None else None
        self._token = secrets.token_hex(4)  # tells our Dask keys and events from other runs'
        self._conn: Connection | None = None
        self._inflight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to our asyncio tasks
        self._releasing: list[_InFlight] | None = None  # what the next batch releases
        self._batch: asyncio.Task[None] | None = None  # the task that will release it
        self._calls: dict[str, Callable[..., Any]] = {}

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` tasks are submitted through (once started)."""
        if self._conn is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._conn.client

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        from asyncflow_dask import _cluster, _events, _worker  # imports distributed

        self._calls = {"call": _worker.call, "call_async": _worker.call_async,
                       "run_command": _worker.run_command, "stop": _worker.stop}
        self._conn = await _cluster.connect(
            address=self._address, cluster=self._cluster, client=self._client_given,
            local=self._local, config=self._dask_config, connect_timeout=self._connect_timeout,
            jobs=self._jobs, adapt=self._adapt)
        _events.listen(self._conn.client, self._token, self._on_started)

    async def shutdown(self) -> None:
        conn = self._conn
        if conn is None:  # start failed before connecting: nothing to release
            return
        from asyncflow_dask import _events

        entries = list(self._inflight.values())
        self._inflight.clear()
        for entry in entries:
            self._disarm(entry)
            self.report(TaskUpdate.cancelled(entry.spec.uid))
            self._release(entry)
        try:
            if self._tasks and conn.client.status == "running":
                # The releases reach the cluster and the watches of their futures end; a
                # scheduler that stopped answering gets RELEASE_WAIT seconds, not forever.
                _, late = await asyncio.wait(set(self._tasks), timeout=RELEASE_WAIT)
                if late:
                    log.warning("dask: %d tasks not released on the cluster within %ss",
                                len(late), RELEASE_WAIT)
        finally:
            _events.stop_listening(conn.client, self._token)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await conn.close()

    # -- submitting ------------------------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        conn = self._conn
        assert conn is not None
        if conn.client.status != "running":
            raise BackendError(f"the Dask client is {conn.client.status}, not connected to the "
                               f"scheduler at {conn.address}")
        # One Client.map (one message to the scheduler) per wrapper and placement.
        groups: dict[tuple[str, str], list[_Call]] = {}
        placements: dict[str, dict[str, Any]] = {}
        for spec in tasks:
            try:
                placement = _placement(spec)
            except (TypeError, ValueError) as exc:
                self.report(TaskUpdate.failed(spec.uid, exc))
                continue
            call = self._call(spec)
            group = (call.wrapper, json.dumps(placement, sort_keys=True, default=str))
            placements[group[1]] = placement
            groups.setdefault(group, []).append(call)
        if any(placements[g] for _, g in groups):
            groups = await self._drop_unplaceable(groups, placements)
        for (wrapper, placement_key), calls in groups.items():
            placement = placements[placement_key]
            try:
                self._map(wrapper, calls, placement)
            except Exception:  # e.g. an argument that cannot be pickled: find which one
                for call in calls:
                    try:
                        self._map(wrapper, [call], placement)
                    except Exception as exc:
                        spec = call.spec
                        error = BackendError(f"task {spec.name!r} ({spec.uid}) cannot be sent "
                                             f"to Dask: {type(exc).__name__}: {exc}")
                        error.__cause__ = exc
                        self.report(TaskUpdate.failed(spec.uid, error))

    def _map(self, wrapper: str, calls: Sequence[_Call], placement: Mapping[str, Any]) -> None:
        columns = list(zip(*(c.args for c in calls), strict=True))
        futures = self.client.map(self._calls[wrapper], *columns, key=[c.key for c in calls],
                                  pure=False, **placement)
        for call, future in zip(calls, futures, strict=True):
            entry = _InFlight(call.spec, future)
            self._inflight[call.spec.uid] = entry
            self._spawn(self._watch(entry))

    def _call(self, spec: TaskSpec) -> _Call:
        """How ``spec`` runs on a worker: the wrapper, the Dask key, the wrapper's arguments."""
        # Unique per backend and attempt: equal calls must never share a key (pure=False).
        key = f"{spec.name}-{self._token}-{spec.uid}-{spec.attempt}"
        tag = (self._token, spec.uid, key)
        if spec.kind is TaskKind.EXECUTABLE:
            return _Call(spec, "run_command", key, (tag, spec))
        if spec.is_coroutine:
            return _Call(spec, "call_async", key, (tag, spec.function, spec.args, spec.kwargs,
                                                    spec.name, spec.timeout))
        return _Call(spec, "call", key, (tag, spec.function, spec.args, spec.kwargs))

    async def _drop_unplaceable(
        self, groups: dict[tuple[str, str], list[_Call]], placements: dict[str, dict[str, Any]],
    ) -> dict[tuple[str, str], list[_Call]]:
        """Fail, rather than queue forever, tasks that no current worker can take."""
        identity = await self.client.scheduler.identity(n_workers=-1)
        workers: dict[str, dict[str, Any]] = identity.get("workers", {})
        kept = {}
        for group, items in groups.items():
            problem = _unplaceable(placements[group[1]], workers)
            if problem is None:
                kept[group] = items
                continue
            for call in items:
                spec = call.spec
                self.report(TaskUpdate.failed(spec.uid, ValueError(
                    f"task {spec.name!r} ({spec.uid}) cannot run on the Dask cluster at "
                    f"{self._conn.address if self._conn else '?'}: {problem}")))
        return kept

    # -- watching ----------------------------------------------------------------------------

    def _on_started(self, uid: str, key: str, worker: str) -> None:
        entry = self._inflight.get(uid)
        if entry is None or entry.future.key != key or entry.worker is not None:
            return  # finished, another attempt, or started again after its worker died
        entry.worker = worker
        spec = entry.spec
        if spec.timeout is not None and spec.kind is TaskKind.FUNCTION and not spec.is_coroutine:
            entry.timer = asyncio.get_running_loop().call_later(spec.timeout, self._time_out,
                                                                entry)
        self.report(TaskUpdate.running(uid))

    async def _watch(self, entry: _InFlight) -> None:
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        try:
            value = await entry.future
        except FutureCancelledError as exc:
            if self._inflight.get(entry.spec.uid) is entry:  # not cancelled by us
                self._finish(entry, TaskUpdate.failed(entry.spec.uid, self._lost(entry, exc)))
        except KilledWorker as exc:
            job = self._conn.job_of(getattr(exc.last_worker, "name", None)) \
                if self._conn is not None else None
            self._finish(entry, TaskUpdate.failed(entry.spec.uid, _worker_lost(entry, exc, job)))
        except Exception as exc:  # the body's own exception, with its remote traceback
            self._finish(entry, TaskUpdate.failed(entry.spec.uid, exc))
        else:
            self._finish(entry, TaskUpdate.done(entry.spec.uid, value, ref=entry.future))

    def _finish(self, entry: _InFlight, update: TaskUpdate) -> None:
        if self._inflight.get(entry.spec.uid) is not entry:
            return  # cancelled or timed out meanwhile: that was its terminal report
        del self._inflight[entry.spec.uid]
        self._disarm(entry)
        self.report(update)

    def _disarm(self, entry: _InFlight) -> None:
        """Cancel the deadline timer of a plain def body; the caller reports the outcome."""
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _lost(self, entry: _InFlight, exc: BaseException) -> BackendError:
        spec, conn = entry.spec, self._conn
        error = BackendError(f"task {spec.name!r} ({spec.uid}) was lost with the Dask "
                             f"scheduler at {conn.address if conn else '?'}: {exc}")
        error.__cause__ = exc
        return error

    def _time_out(self, entry: _InFlight) -> None:
        spec = entry.spec
        assert spec.timeout is not None
        if self._inflight.get(spec.uid) is not entry:
            return
        self._finish(entry, TaskUpdate.failed(spec.uid, TaskTimeoutError(
            spec.name, spec.timeout, _THREAD_NOTE)))
        self._release(entry)

    # -- cancelling --------------------------------------------------------------------------

    async def cancel(self, uid: str) -> bool:
        entry = self._inflight.pop(uid, None)
        if entry is None:
            return False
        self._disarm(entry)
        self.report(TaskUpdate.cancelled(uid))
        await asyncio.shield(self._release(entry))  # one caller's cancel stops no batch
        return True

    def _release(self, entry: _InFlight) -> asyncio.Task[None]:
        """Forget a settled task's Dask future and stop its body; the task doing it.

        The releases of one turn of the event loop (a shutdown cancels every task at once)
        go in one batch: one ``Client.cancel`` and at most one ``Client.run``, not three
        calls per task; and a worker that died unnoticed holds the batch up for at most
        :data:`STOP_WAIT` seconds, not Dask's connect timeout.
        """
        if self._releasing is None or self._batch is None:
            self._releasing = []
            self._batch = self._spawn(self._release_batch())
        self._releasing.append(entry)
        return self._batch

    async def _release_batch(self) -> None:
        entries, self._releasing, self._batch = self._releasing or [], None, None
        try:
            await self._cancel_on_cluster(entries)
        except Exception:
            log.warning("dask: could not cancel %d tasks on the cluster", len(entries),
                        exc_info=True)

    async def _cancel_on_cluster(self, entries: Sequence[_InFlight]) -> None:
        """Forget the Dask futures and stop the bodies already running (async ones and
        commands; a thread cannot be stopped)."""
        client = self.client
        await client.cancel([e.future for e in entries])
        stoppable = [e for e in entries
                     if e.spec.kind is TaskKind.EXECUTABLE or e.spec.is_coroutine]
        if not stoppable:
            return
        # Only workers the scheduler still lists: connecting to a dead one would hang. A body
        # may have started without its event having arrived yet: then ask all of them.
        alive = (await client.scheduler.identity(n_workers=-1)).get("workers", {})
        started = {e.worker for e in stoppable}
        workers = sorted(alive if None in started else started & alive.keys())
        if not workers:
            return
        try:
            await asyncio.wait_for(client.run(self._calls["stop"],
                                              [e.future.key for e in stoppable],
                                              workers=workers, on_error="ignore"), STOP_WAIT)
        except TimeoutError:  # the scheduler still lists a dead worker: its bodies died too
            log.info("dask: a worker did not answer within %ss when asked to stop %d "
                     "cancelled bodies (it died?)", STOP_WAIT, len(stoppable))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _placement(spec: TaskSpec) -> dict[str, Any]:
    """The ``Client.map`` keywords of a task's ``task_description``.

    Only ``resources``, ``gpus``, ``workers``, ``allow_other_workers`` and ``priority`` are
    read here; other keys are for other backends.
    """
    desc = spec.description
    where = f"task {spec.name!r} ({spec.uid})"
    options: dict[str, Any] = {}
    resources = dict(desc.get("resources") or {})
    if "gpus" in desc:
        if "GPU" in resources and resources["GPU"] != desc["gpus"]:
            raise ValueError(f"{where}: task_description gives gpus={desc['gpus']!r} and "
                             f"resources['GPU']={resources['GPU']!r}")
        resources["GPU"] = desc["gpus"]
    for name, amount in resources.items():
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise ValueError(f"{where}: Dask resource {name!r} needs a number >= 0, not "
                             f"{amount!r}")
    resources = {name: amount for name, amount in resources.items() if amount}
    if resources:
        options["resources"] = resources
    if desc.get("workers") is not None:
        workers = desc["workers"]
        options["workers"] = [workers] if isinstance(workers, str) else list(workers)
        options["allow_other_workers"] = bool(desc.get("allow_other_workers", False))
    if desc.get("priority") is not None:
        if not isinstance(desc["priority"], int):
            raise TypeError(f"{where}: task_description priority must be an int, not "
                            f"{desc['priority']!r}")
        options["priority"] = desc["priority"]
    return options


def _unplaceable(placement: Mapping[str, Any], workers: Mapping[str, Mapping[str, Any]]
                 ) -> str | None:
    """Why no current worker can take a task with this placement, or ``None``."""
    wanted = placement.get("resources", {})
    if wanted:
        offered = [w.get("resources") or {} for w in workers.values()]
        if not any(all(r.get(k, 0) >= v for k, v in wanted.items()) for r in offered):
            have = sorted({f"{k}={v}" for r in offered for k, v in r.items()}) or ["none"]
            return (f"it needs the Dask resources {wanted}, but no worker offers them (workers "
                    f"offer: {', '.join(have)}); start workers with e.g. "
                    f"`dask worker --resources \"GPU=1\"`")
    named = placement.get("workers")
    if named and not placement.get("allow_other_workers"):
        known = {a for a in workers} | {w.get("name") for w in workers.values()} | \
                {a.split("://")[-1].rsplit(":", 1)[0] for a in workers}
        if not any(w in known for w in named):
            return f"none of the workers {named} is connected (connected: {sorted(workers)})"
    return None


def _check_batch_options(cluster: Any, jobs: int | None,
                         adapt: Mapping[str, int] | None) -> None:
    from asyncflow_dask._jobqueue import KINDS  # no dask import

    if isinstance(cluster, str) and cluster not in KINDS:
        raise ValueError(f"DaskExecutionBackend: cluster = {cluster!r} is not a batch system "
                         f"dask-jobqueue knows ({', '.join(KINDS)})")
    if not isinstance(cluster, str) and (jobs is not None or adapt is not None):
        raise TypeError("DaskExecutionBackend: jobs= and adapt= scale a batch system named by "
                        "cluster= (e.g. cluster='slurm')")
    if jobs is not None and adapt is not None:
        raise TypeError("DaskExecutionBackend: give jobs= (a fixed number of worker jobs) or "
                        "adapt= (a range), not both")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"DaskExecutionBackend: jobs must be a whole number >= 1, not {jobs!r}")
    if adapt is not None:
        unknown = sorted(set(adapt) - {"minimum", "maximum"})
        low, high = adapt.get("minimum", 0), adapt.get("maximum", adapt.get("minimum", 1))
        if unknown or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                              for n in (low, high)) or high < max(low, 1):
            raise ValueError(f"DaskExecutionBackend: adapt = {dict(adapt)!r}: expected "
                             "{minimum = m, maximum = n} worker jobs, 0 <= m <= n, n >= 1")


def _worker_lost(entry: _InFlight, exc: Any, job: str | None = None) -> WorkerLostError:
    spec = entry.spec
    last = getattr(exc.last_worker, "address", exc.last_worker)
    if job is not None:
        last = f"{last} ({job})"
    tries = exc.allowed_failures + 1
    error = WorkerLostError(
        f"task {spec.name!r} ({spec.uid}, attempt {spec.attempt}): the Dask worker {last} died "
        f"while running it; Dask ran it on {tries} worker{'s' if tries > 1 else ''}, and each "
        f"died (its distributed.scheduler.allowed-failures is {exc.allowed_failures})")
    error.__cause__ = exc
    return error
