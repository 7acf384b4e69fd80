"""``RadicalExecutionBackend``: AsyncFlow tasks as RADICAL-Pilot tasks inside one pilot job.

``start()`` opens a RADICAL-Pilot session, submits one pilot to the chosen resource and waits
until it is active. Executable tasks become RADICAL-Pilot tasks; function tasks go to a RAPTOR
master and its workers on the same pilot, started with the first function task. Service tasks
are long-running executable tasks whose readiness is watched from here (see ``_services.py``).
RADICAL-Pilot reports task states on its own threads; they reach the engine through
:meth:`report`.

RADICAL-Pilot is imported by ``start()``, after ``_environment.prepare`` has pointed it at
this interpreter's environment: importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncflow.backend import Capabilities, ExecutionBackend, TaskKind, TaskSpec, TaskUpdate
from asyncflow.errors import BackendError, CapabilityError, TaskTimeoutError, WorkerLostError
from asyncflow.executables import outcome
from asyncflow_radical import _remote, _site
from asyncflow_radical._describe import describe, stdio_names
from asyncflow_radical._pilot import PilotJob
from asyncflow_radical._services import Ended, Service, unsupported
from asyncflow_radical._staging import FileLedger

__all__ = ["RadicalExecutionBackend"]

_CANCEL_AGAIN_AFTER = 1.0  # seconds; see cancel()
_SHORTENED = "[... CONTENT SHORTENED ...]"  # how RADICAL-Pilot starts output it cut to 1 KiB


class _Job:
    """A task between ``submit`` and its one terminal report."""

    __slots__ = ("cancelling", "limit", "our_clock", "running", "service", "spec", "stdio",
                 "timed_out")

    def __init__(self, spec: TaskSpec, stdio: tuple[str, str], limit: float | None) -> None:
        self.spec = spec
        self.stdio = stdio  # file names of stdout and stderr in the task's sandbox
        self.running = False
        self.cancelling = False
        self.limit = limit  # its timeout: timeout= or the task_description's own
        self.our_clock = False  # the timeout is kept here, not by RADICAL-Pilot's agent
        self.timed_out = False
        self.service: Service | None = None  # a service task's watcher, which reports it


class RadicalExecutionBackend(ExecutionBackend):
    """Runs tasks inside a RADICAL-Pilot pilot job, on this machine or on an HPC resource.

    The pilot options map to ``radical.pilot.PilotDescription``; an option left at ``None``
    is left to the resource's configuration.

    Args:
        resource: a RADICAL-Pilot resource label: ``"local.localhost"`` (this machine, the
            default) or a site's, e.g. ``"tacc.frontera"``; with ``site``, the label to give
            that site (default ``"asyncflow.site"``).
        site: the resource described here instead of in RADICAL-Pilot's files: a table with
            the keys of a RADICAL-Pilot resource configuration (``resource_manager``,
            ``schemas``, ``cores_per_node``...) or the path of a JSON file holding one. It is
            registered for this backend's session only; nothing is written under
            ``~/.radical``.
        cores: cores to ask for; with neither ``cores`` nor ``nodes``, one node.
        gpus: GPUs to ask for.
        nodes: nodes to ask for.
        runtime: minutes the pilot may run; the agent ends itself after that.
        queue: the batch queue (partition) to submit the pilot job to.
        project: the allocation to charge.
        access_schema: how to reach the resource, e.g. ``"local"``, ``"ssh"``, ``"batch"``.
        sandbox: the pilot's sandbox folder on the resource.
        pilot: further ``PilotDescription`` fields, passed through (e.g. ``{"cleanup": True}``).
        startup_timeout: seconds ``start()`` waits for the pilot to become active; ``None``
            waits as long as the batch queue takes.
        client_sandbox: where RADICAL-Pilot writes the client side of its session; by default
            ``$RADICAL_PILOT_BASE`` if set, else a temporary folder removed at shutdown.
        raptor_workers: RAPTOR workers that run function tasks; by default one per node.
        raptor_cores_per_worker: cores of each worker: how many function tasks it runs at
            once; by default half a node's cores (at least one). A worker fits on one node, and
            RAPTOR (its master takes a core) fits in the pilot, or ``start()`` fails naming the
            numbers before the pilot is submitted.
        raptor_on_start: start RAPTOR in ``start()`` rather than with the first function task.
        raptor_worker: further ``TaskDescription`` fields of the workers (e.g. ``pre_exec``).
    """

    name = "radical"
    capabilities = Capabilities(
        function_tasks=True, executable_tasks=True, cancel_running=True, capture_stdio=True,
        timeouts=True, file_staging=True, resources=True, remote_workers=True,
        services=True,  # executable services, watched from here (see _services.py)
    )

    def __init__(
        self,
        *,
        resource: str | None = None,
        site: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        cores: int | None = None,
        gpus: int | None = None,
        nodes: int | None = None,
        runtime: int = 60,
        queue: str | None = None,
        project: str | None = None,
        access_schema: str | None = None,
        sandbox: str | None = None,
        pilot: Mapping[str, Any] | None = None,
        startup_timeout: float | None = 600.0,
        client_sandbox: str | os.PathLike[str] | None = None,
        raptor_workers: int | None = None,
        raptor_cores_per_worker: int | None = None,
        raptor_on_start: bool = False,
        raptor_worker: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for option, value in (("cores", cores), ("gpus", gpus), ("nodes", nodes)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"radical backend: {option} must be a whole number >= 0, "
                                 f"not {value!r}")
        for option, value in (("runtime", runtime), ("raptor_workers", raptor_workers),
                              ("raptor_cores_per_worker", raptor_cores_per_worker)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"radical backend: {option} must be a whole number >= 1, "
                                 f"not {value!r}")
        if pilot and "exit_on_error" in pilot:
            raise ValueError("radical backend: exit_on_error is always False: a failed pilot "
                             "fails its tasks and never signals this process")
        self.site = None if site is None else _site.load(site)
        if resource is None:
            resource = "local.localhost" if site is None else _site.DEFAULT_LABEL
        if "." not in resource:
            raise ValueError(f"radical backend: resource {resource!r} must be a label of the "
                             "form <site>.<machine>, e.g. 'local.localhost'")
        self.resource = resource
        self.pilot_description: dict[str, Any] = {
            key: value for key, value in (
                ("cores", cores), ("gpus", gpus), ("nodes", nodes), ("queue", queue),
                ("project", project), ("access_schema", access_schema), ("sandbox", sandbox),
            ) if value is not None}
        if cores is None and nodes is None:
            self.pilot_description["nodes"] = 1
        self.pilot_description.update(pilot or {})
        self.pilot_description.update(resource=resource, runtime=runtime, exit_on_error=False)
        self.startup_timeout = startup_timeout
        self.client_sandbox = client_sandbox
        self.raptor_workers = raptor_workers
        self.raptor_cores_per_worker = raptor_cores_per_worker
        self.raptor_on_start = raptor_on_start
        self.raptor_worker = dict(raptor_worker or {})

        self._host: RadicalExecutionBackend | None = None  # the backend whose pilot we share
        self._job: PilotJob | None = None
        self._rp: Any = None  # the radical.pilot module, once started
        self._temp_sandbox: str | None = None
        self._tag = f"af{secrets.token_hex(3)}"  # our RADICAL-Pilot uids: <tag>.<task uid>
        self._jobs: dict[str, _Job] = {}  # by RADICAL-Pilot uid
        self._services: dict[str, Service] = {}  # by task uid, until their watchers end
        self._lock = threading.Lock()  # RADICAL-Pilot's threads settle jobs too
        self._files = FileLedger()
        self._made_dirs: set[Path] = set()
        self._active: asyncio.Future[None] | None = None
        self._pilot_problem: str | None = None  # why the pilot ended, once it has
        self._stopping = False

    @property
    def batch_job(self) -> str | None:
        """The batch job the pilot runs in (e.g. ``"Slurm job 42"``), once it is active and
        where the resource's batch system says so."""
        job = self._job or (self._host._job if self._host is not None else None)
        return None if job is None else job.batch_job

    def share(self) -> RadicalExecutionBackend:
        """A new backend that runs its tasks on this backend's pilot.

        Start it on any event loop once this one has started; several engines can so share
        one allocation. Its shutdown cancels its own tasks and leaves the pilot running; the
        pilot ends with this backend.
        """
        twin = type(self)(resource=self.resource)
        twin._host = self
        return twin

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._active = self.loop.create_future()
        try:
            if self._host is not None:
                self._job = self._host._job
                if self._job is None:
                    raise RuntimeError("start the backend this one shares a pilot with first")
            else:
                self._job = self._new_job()
                await asyncio.to_thread(self._job.open)
            self._rp = self._job.rp
            self._job.listen(self)
            async with asyncio.timeout(self.startup_timeout):
                await self._active
            if self.raptor_on_start:
                await asyncio.to_thread(self._job.raptor_master)
        except BaseException as exc:
            await asyncio.shield(self._release([]))
            if isinstance(exc, TimeoutError) and self._pilot_problem is None:
                raise TimeoutError(
                    f"radical backend: the pilot on {self.resource} was not active after "
                    f"{self.startup_timeout:g} s (startup_timeout); a batch queue may need "
                    "longer, or startup_timeout=None") from None
            raise

    def _new_job(self) -> PilotJob:
        base = self.client_sandbox or os.environ.get("RADICAL_PILOT_BASE")
        if base is None:
            base = self._temp_sandbox = tempfile.mkdtemp(prefix="asyncflow-radical-")
        return PilotJob(self.pilot_description, client_sandbox=os.fspath(base),
                        raptor_workers=self.raptor_workers,
                        raptor_cores_per_worker=self.raptor_cores_per_worker,
                        raptor_worker=self.raptor_worker, site=self.site)

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        job = self._job
        assert job is not None, "submit() before start()"
        if self._pilot_problem is not None:
            for spec in tasks:
                self.report(TaskUpdate.failed(spec.uid, self._pilot_lost(spec)))
            return
        raptor_id = raptor_error = None
        if any(spec.kind is TaskKind.FUNCTION and spec.service is None for spec in tasks):
            try:
                raptor_id = await asyncio.to_thread(job.raptor_master)
            except Exception as exc:
                raptor_error = exc
        descriptions: list[dict[str, Any]] = []
        jobs: list[_Job] = []
        for spec in tasks:
            try:
                if spec.service is not None:
                    self._check_service(spec, job)
                if spec.kind is TaskKind.FUNCTION and raptor_error is not None:
                    raise BackendError(f"task {spec.name!r} ({spec.uid}): RAPTOR, which runs "
                                       f"function tasks, did not start: {raptor_error}")
                td = describe(spec, job.fields, uid=f"{self._tag}.{spec.uid}",
                              raptor_id=raptor_id, input_staging=self._files.input_staging(spec))
                self._make_dirs(spec)
            except Exception as exc:  # this task is wrong, the rest of the batch is fine
                self.report(TaskUpdate.failed(spec.uid, exc))
                continue
            self._files.record_outputs(spec, td["uid"])
            descriptions.append(td)
            limit = td.get("timeout") or None  # RADICAL-Pilot's 0: none
            entry = _Job(spec, stdio_names(td), None if limit is None else float(limit))
            if job.slurm_job is not None and spec.kind is TaskKind.EXECUTABLE and limit:
                # The agent's timeout stops an srun step the way its cancel does, which leaves
                # the command running (see PilotJob.stop): keep the time here and stop it so.
                del td["timeout"]
                entry.our_clock = True
            if spec.service is not None:
                entry.service = Service(spec, td["uid"], self._task_sandbox(td), entry.stdio,
                                        self.report, functools.partial(job.stop, [td["uid"]]))
            jobs.append(entry)
        if not jobs:
            return
        with self._lock:
            for td, entry in zip(descriptions, jobs, strict=True):
                self._jobs[td["uid"]] = entry
        try:
            await asyncio.to_thread(job.submit, descriptions, self)
        except BaseException:
            with self._lock:
                for td in descriptions:
                    self._jobs.pop(td["uid"], None)
            raise
        for entry in jobs:
            if entry.service is not None:
                self._watch(entry.service)

    def _check_service(self, spec: TaskSpec, job: PilotJob) -> None:
        if spec.kind is not TaskKind.EXECUTABLE:
            raise CapabilityError(
                f"service {spec.name!r} ({spec.uid}): the radical backend runs executable "
                "services only (a function service would hold a RAPTOR worker for its whole "
                "life); make it an executable_task that starts the server")
        problem = unsupported(spec, job.sandbox_here, job.runs_here, self.resource)
        if problem is not None:
            raise CapabilityError(problem)

    def _task_sandbox(self, td: Mapping[str, Any]) -> Path | None:
        """The task's folder, if the pilot's sandbox is on this machine: RADICAL-Pilot's
        ``<pilot sandbox>/<uid>/``, or the ``sandbox`` of its description."""
        assert self._job is not None
        pilot = _local_path(self._job.pilot_sandbox)
        return None if pilot is None else pilot / str(td.get("sandbox") or td["uid"])

    def _watch(self, service: Service) -> None:
        uid = service.spec.uid
        self._services[uid] = service
        service.task = self.loop.create_task(service.run(), name=f"service {uid}")
        service.task.add_done_callback(lambda _: self._services.pop(uid, None))

    def _make_dirs(self, spec: TaskSpec) -> None:
        for path in (spec.stdout, spec.stderr):
            if path is not None and path.parent not in self._made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(path.parent)

    # -- what the pilot job tells us, on RADICAL-Pilot's threads ---------------------------

    def pilot_changed(self, state: str, problem: str | None) -> None:
        if not self._stopping:
            self._call_soon(self._pilot_changed, state, problem)

    def task_changed(self, task: Any, state: str) -> None:
        with self._lock:
            entry = self._jobs.get(task.uid)
            if entry is None:
                return
            rp = self._rp
            if state in rp.FINAL:
                del self._jobs[task.uid]  # reported under the lock: after RUNNING, once
                if entry.service is not None:  # its watcher decides what that means
                    self._call_soon(entry.service.ended, self._ended(entry, task, state))
                else:
                    self.report(self._settle(entry, task, state))
            elif not entry.running and (
                    state == rp.AGENT_EXECUTING
                    # RAPTOR reports a function task's states only once it has ended: the
                    # closest to "started" is being handed to RAPTOR.
                    or (state == rp.AGENT_SCHEDULING and entry.spec.kind is TaskKind.FUNCTION)):
                entry.running = True
                self.report(TaskUpdate.running(entry.spec.uid))
                if entry.our_clock:
                    self._call_soon(self._start_clock, task.uid, entry.limit)
                if entry.service is not None:
                    self._call_soon(entry.service.launched)

    def raptor_lost(self, problem: str) -> None:
        self._fail(lambda entry: entry.spec.kind is TaskKind.FUNCTION,
                   lambda spec: WorkerLostError(f"task {spec.name!r} ({spec.uid}): {problem}"))

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(callback, *args)

    # -- on the engine's loop --------------------------------------------------------------

    def _pilot_changed(self, state: str, problem: str | None) -> None:
        active = self._active
        if state == self._rp.PMGR_ACTIVE:
            if active is not None and not active.done():
                active.set_result(None)
        elif problem is not None and not self._stopping:
            self._pilot_problem = problem
            if active is not None and not active.done():
                active.set_exception(WorkerLostError(problem))
            self._fail(lambda entry: True, self._pilot_lost)

    def _start_clock(self, rp_uid: str, limit: float) -> None:
        self.loop.call_later(limit, self._time_out, rp_uid)

    def _time_out(self, rp_uid: str) -> None:
        with self._lock:
            entry = self._jobs.get(rp_uid)  # None: it ended in time
            if entry is None or entry.cancelling or entry.timed_out:
                return
            entry.timed_out = True
        job = self._job
        if job is not None:  # not awaited: asyncio logs an error it raises
            self.loop.run_in_executor(None, job.stop, [rp_uid])

    def _pilot_lost(self, spec: TaskSpec) -> WorkerLostError:
        return WorkerLostError(f"task {spec.name!r} ({spec.uid}): {self._pilot_problem}")

    def _fail(self, which: Callable[[_Job], bool],
              error: Callable[[TaskSpec], BaseException]) -> None:
        with self._lock:
            for uid, entry in list(self._jobs.items()):
                if which(entry):
                    del self._jobs[uid]
                    if entry.service is not None:  # it ended with the pilot
                        self._call_soon(entry.service.ended, Ended(
                            "FAILED", None, "", str(error(entry.spec))))
                    else:
                        self.report(TaskUpdate.failed(entry.spec.uid, error(entry.spec)))

    # -- outcomes: what a final RADICAL-Pilot task means for AsyncFlow ---------------------

    def _settle(self, entry: _Job, task: Any, state: str) -> TaskUpdate:
        spec = entry.spec
        if entry.cancelling:
            return TaskUpdate.cancelled(spec.uid)
        if entry.timed_out:
            assert entry.limit is not None
            return TaskUpdate.failed(spec.uid, TaskTimeoutError(spec.name, entry.limit))
        try:
            if spec.kind is TaskKind.FUNCTION:
                value = self._function_value(spec, task, state)
            else:
                value = self._command_value(entry, task, state)
        except _remote.Cancelled:
            return TaskUpdate.cancelled(spec.uid)
        except Exception as exc:
            return TaskUpdate.failed(spec.uid, exc)
        return TaskUpdate.done(spec.uid, value)

    def _function_value(self, spec: TaskSpec, task: Any, state: str) -> Any:
        if state == self._rp.DONE:
            return _remote.unpack(task.return_value, spec)
        if spec.timeout is not None and str(task.exception).startswith("TimeoutError"):
            raise TaskTimeoutError(spec.name, spec.timeout)
        raise self._lost(spec, task, state)

    def _command_value(self, entry: _Job, task: Any, state: str) -> Any:
        spec, code, rp = entry.spec, task.exit_code, self._rp
        if state == rp.DONE or (state == rp.FAILED and code):
            stdout = _whole(task.stdout, task.sandbox, entry.stdio[0])
            stderr = _whole(task.stderr, task.sandbox, entry.stdio[1])
            return outcome(spec, code or 0, stdout, stderr)
        if state == rp.CANCELED and entry.limit is not None:  # the agent's timeout
            raise TaskTimeoutError(spec.name, entry.limit)
        raise self._lost(spec, task, state)

    def _ended(self, entry: _Job, task: Any, state: str) -> Ended:
        return Ended(state, task.exit_code, _whole(task.stdout, task.sandbox, entry.stdio[0]),
                     _whole(task.stderr, task.sandbox, entry.stdio[1]))

    def _lost(self, spec: TaskSpec, task: Any, state: str) -> Exception:
        """The error of a task RADICAL-Pilot ended without running it to completion."""
        if state == self._rp.CANCELED:
            return WorkerLostError(f"task {spec.name!r} ({spec.uid}) was cancelled by "
                                   "RADICAL-Pilot (its pilot or RAPTOR worker ended)")
        detail = (task.stderr or "").strip()[-1000:]
        return BackendError(f"task {spec.name!r} ({spec.uid}) failed in RADICAL-Pilot before it "
                            f"could finish: {task.exception}" + (f"\n{detail}" if detail else ""))

    # -- cancel and shutdown ---------------------------------------------------------------

    async def cancel(self, uid: str) -> bool:
        service = self._services.get(uid)
        if service is not None:  # before it is ready, or ready (flow.stop_service)
            return await service.stop()
        rp_uid = f"{self._tag}.{uid}"
        with self._lock:
            entry = self._jobs.get(rp_uid)
            if entry is None or entry.cancelling:
                return False
            entry.cancelling = True
        assert self._job is not None
        await asyncio.to_thread(self._job.stop, [rp_uid])
        # RADICAL-Pilot 1.103 loses a cancellation that reaches the agent while it launches
        # the command (is_canceled() then fails to publish the task with its Popen handle):
        # a second request, once the command runs, does not race.
        self.loop.call_later(_CANCEL_AGAIN_AFTER, self._cancel_again, rp_uid)
        return True

    def _cancel_again(self, rp_uid: str) -> None:
        job = self._job
        if job is not None and rp_uid in self._jobs:  # not awaited: asyncio logs an error it raises
            self.loop.run_in_executor(None, job.stop, [rp_uid])

    async def shutdown(self) -> None:
        self._stopping = True
        if self._services:  # each waits for its task's final state, all at once
            await asyncio.gather(*(s.stop() for s in list(self._services.values())),
                                 return_exceptions=True)
        with self._lock:
            jobs, self._jobs = self._jobs, {}
            for entry in jobs.values():
                if entry.service is None:  # a service's watcher has reported it
                    self.report(TaskUpdate.cancelled(entry.spec.uid))
        await self._release(list(jobs))

    async def _release(self, in_flight: list[str]) -> None:
        self._stopping = True
        job, self._job = self._job, None
        if job is not None:
            job.forget(self)
            await asyncio.to_thread(job.stop, in_flight)
            if self._host is None:
                await asyncio.to_thread(job.close)
        if self._temp_sandbox is not None:
            shutil.rmtree(self._temp_sandbox, ignore_errors=True)


def _local_path(sandbox: Any) -> Path | None:
    """The path of a sandbox URL (a str or RADICAL's Url) on this machine, or ``None``."""
    url = urlparse(str(sandbox or ""))
    if url.scheme == "file" and url.hostname in (None, "", "localhost") and url.path:
        return Path(url.path)
    return None


def _whole(text: str | None, sandbox: str | None, name: str) -> str:
    """A task's stdout or stderr: RADICAL-Pilot keeps the last KiB; read the file when the
    sandbox is on this machine."""
    text = text or ""
    if not text.startswith(_SHORTENED):
        return text
    path = _local_path(sandbox)
    if path is not None:
        with contextlib.suppress(OSError):
            return (path / name).read_text(errors="replace")
    return text
