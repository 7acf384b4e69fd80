"""One RADICAL-Pilot session with one pilot, and the RAPTOR that runs its function tasks.

A :class:`PilotJob` is driven from threads (every RADICAL-Pilot call blocks) and knows no
event loop: several backends, each on its own loop, can share it. It routes each task's
state callbacks to the listener that submitted the task, and tells every listener about the
pilot's state and about a RAPTOR that ended by itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from asyncflow_radical import _batch, _environment, _remote, _site

__all__ = ["Listener", "PilotJob", "import_radical_pilot"]

log = logging.getLogger("asyncflow.radical")

# The RAPTOR worker class that lets function tasks be cancelled (see _worker.py). RAPTOR loads
# it from a file, which is never imported here: it imports radical.pilot.
_WORKER_FILE = Path(__file__).with_name("_worker.py")
_WORKER_CLASS = "AsyncflowWorker"
# Seconds a pilot in a Slurm job is given to stop on request before its job is cancelled.
_PILOT_ASKED = 2.0
RAPTOR_STARTUP_TIMEOUT = 300  # seconds for a new RAPTOR to run its first function task


class Listener(Protocol):
    """What a backend hears from its :class:`PilotJob`, on RADICAL-Pilot's threads."""

    def pilot_changed(self, state: str, problem: str | None) -> None:
        """The pilot reached ``state``; ``problem`` says why a final state is one."""

    def task_changed(self, task: Any, state: str) -> None:
        """A task this listener submitted reached ``state``."""

    def raptor_lost(self, problem: str) -> None:
        """RAPTOR ended by itself: function tasks in flight cannot finish."""


class PilotJob:
    """A RADICAL-Pilot session, its pilot and, on first use, a RAPTOR master and workers.

    Args:
        description: ``radical.pilot.PilotDescription`` fields.
        client_sandbox: where RADICAL-Pilot writes the client side of the session.
        raptor_workers: number of RAPTOR workers; ``None``: one per node of the pilot.
        raptor_cores_per_worker: cores of each worker, i.e. its concurrent function tasks;
            ``None``: half a node's cores (at least one), the rest left to executables.
        raptor_worker: further ``TaskDescription`` fields of the workers.
        site: the resource description of ``description["resource"]``, registered for this
            session only; ``None``: a resource RADICAL-Pilot knows.
    """

    def __init__(self, description: Mapping[str, Any], *, client_sandbox: str,
                 raptor_workers: int | None, raptor_cores_per_worker: int | None,
                 raptor_worker: Mapping[str, Any],
                 site: Mapping[str, Any] | None = None) -> None:
        self.description = dict(description)
        self.client_sandbox = client_sandbox
        self.site = dict(site) if site is not None else None
        # Set from the options by open(), once the resource's cores per node are known.
        self.raptor_workers = raptor_workers or 0
        self.raptor_cores_per_worker = raptor_cores_per_worker or 0
        self._raptor_asked = (raptor_workers, raptor_cores_per_worker)
        self.raptor_worker = dict(raptor_worker)
        self.rp: Any = None  # the radical.pilot module
        self.fields: frozenset[str] = frozenset()  # what rp.TaskDescription accepts
        self.state: str | None = None
        self.problem: str | None = None  # why the pilot ended, once it has
        self.batch_job: str | None = None  # e.g. "Slurm job 42", once the pilot is active
        self.slurm_job: str | None = None  # e.g. "42": then every executable is an srun step
        # Where the pilot is, from the resource's access schema (set by open()): its sandbox
        # on this machine's filesystem (file://localhost), its tasks on this machine (fork).
        self.sandbox_here = False
        self.runs_here = False
        self._resource_manager = ""  # the resource's, e.g. "SLURM"
        self._session: Any = None
        self._pmgr: Any = None
        self._tmgr: Any = None
        self._pilot: Any = None
        # Two locks: _serial keeps open, RAPTOR start and close from overlapping; it is held
        # across RADICAL-Pilot calls, which wait for RADICAL-Pilot's threads. _lock guards the
        # tables those threads use in their callbacks, and is never held across such a call.
        self._serial = threading.Lock()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._owners: dict[str, Listener] = {}  # task uid -> who submitted it
        self._raptor: str | None = None  # the master's uid
        self._raptor_tasks: frozenset[str] = frozenset()  # master and workers
        self._probe: _Probe | None = None  # RAPTOR's first function task
        self._closed = False

    @property
    def resource(self) -> str:
        return str(self.description.get("resource"))

    @property
    def pilot_sandbox(self) -> str | None:
        """The pilot's sandbox URL, once it is submitted."""
        pilot = self._pilot
        return None if pilot is None else str(pilot.pilot_sandbox or "") or None

    # -- life cycle (blocking) -------------------------------------------------------------

    def open(self) -> None:
        """Import RADICAL-Pilot, open the session and submit the pilot (do not wait for it)."""
        with self._serial:
            if self._session is not None or self._closed:
                return
            _environment.prepare(self.resource)
            rp = self.rp = import_radical_pilot()
            self.fields = frozenset(rp.TaskDescription()._schema)
            known = frozenset(rp.PilotDescription()._schema)
            unknown = sorted(set(self.description) - known)
            if unknown:
                raise ValueError(f"radical backend: pilot options {unknown} are not fields of "
                                 f"radical.pilot's PilotDescription ({', '.join(sorted(known))})")
            if self.site is not None:
                _site.check(self.site, rp)
            # One session (with its managers) at a time in a process: see own_environment.
            with _environment.own_environment(self.resource, self.site):
                self._session = rp.Session(cfg={"base": self.client_sandbox})
                config = self._session.get_resource_config(self.resource)
                self._resource_manager = str(config.get("resource_manager") or "")
                self._locate(config)
                self._plan_raptor(config)
                self._pmgr = rp.PilotManager(session=self._session)
                self._tmgr = rp.TaskManager(session=self._session)
            self._pmgr.register_callback(self._on_pilot_state)
            self._tmgr.register_callback(self._on_task_state)
            self._pilot = self._pmgr.submit_pilots(rp.PilotDescription(self.description))
            self._tmgr.add_pilots(self._pilot)

    def _locate(self, config: Mapping[str, Any]) -> None:
        schema = self.description.get("access_schema") or config.get("default_schema")
        endpoints = (config.get("schemas") or {}).get(schema) or {}
        self.sandbox_here = _here(endpoints.get("filesystem_endpoint"), "file")
        self.runs_here = self.sandbox_here and _here(endpoints.get("job_manager_endpoint"),
                                                     "fork")

    def _plan_raptor(self, config: Mapping[str, Any]) -> None:
        """RAPTOR's worker count and size, from the options or the pilot's shape; an
        impossible shape is an error now, before the pilot is submitted."""
        per_node = int(config.get("cores_per_node") or 0)
        cores, nodes = self.description.get("cores"), self.description.get("nodes")
        if per_node < 1:  # the resource does not say: trust the options
            per_node = cores or 1
        total = cores if cores else (nodes or 1) * per_node
        nodes = nodes or -(-total // per_node)
        workers, size = self._raptor_asked
        size = size or max(1, min(per_node, total) // 2)
        workers = workers or nodes
        where = f"the pilot on {self.resource} ({nodes} node(s) x {per_node} cores, {total} " \
                "cores in all)"
        if size > per_node:
            raise ValueError(f"radical backend: raptor_cores_per_worker={size}, but a RAPTOR "
                             f"worker runs on one node and {where} has {per_node} cores per "
                             "node; lower raptor_cores_per_worker")
        if 1 + workers * size > total:
            raise ValueError(f"radical backend: RAPTOR needs {1 + workers * size} cores (1 for "
                             f"its master, raptor_workers={workers} x raptor_cores_per_worker="
                             f"{size}), more than {where}; lower them or ask for more cores")
        self.raptor_workers, self.raptor_cores_per_worker = workers, size

    def close(self) -> None:
        """Stop RAPTOR, cancel the pilot, close the session: each step even if an earlier one
        failed, so that no RADICAL-Pilot process outlives the job."""
        with self._serial:
            with self._lock:
                self._closed = True
                listeners, self._listeners = self._listeners, []
                self._owners.clear()
                raptor = list(self._raptor_tasks)
                self._raptor_tasks, self._raptor = frozenset(), None
            for listener in listeners:  # backends still sharing the pilot: their tasks end
                listener.pilot_changed("CANCELED",
                                       "the backend that started the pilot has shut it down")
            tmgr, pmgr, session, pilot = self._tmgr, self._pmgr, self._session, self._pilot
            self._tmgr = self._pmgr = self._session = self._pilot = None
            job = self.slurm_job
            if job is None and pilot is not None and self._resource_manager == "SLURM":
                job = _batch.slurm_job(pilot.pilot_sandbox)  # submitted, never active
            if self.slurm_job is not None:  # RAPTOR, services, tasks: see stop()
                _attempt("end the job's task steps", self._end_steps, None)
            if tmgr is not None and raptor:  # never raptor.rpc("stop"): it can hang forever
                _attempt("stop RAPTOR", tmgr.cancel_tasks, raptor)
                _attempt("wait for RAPTOR to stop", tmgr.wait_tasks, raptor, timeout=30)
            if pmgr is not None and job is not None:
                # RADICAL-Pilot learns that a batch job ended only at psij's next poll of the
                # queue (every 30 s), and waits for it when it cancels the pilot or closes its
                # pilot manager. The job is ours and known: end it, and close without that wait.
                _attempt("ask the pilot to stop", pmgr.cancel_pilots, _timeout=_PILOT_ASKED)
                _attempt(f"cancel Slurm job {job}", _batch.scancel, job)
                _attempt("close the pilot manager", pmgr.close, terminate=False)
            elif pmgr is not None:  # before session.close(), which may otherwise stall ~15 s
                _attempt("cancel the pilot", pmgr.cancel_pilots, _timeout=60)
            if session is not None:
                _attempt("close the session", session.close, download=False)
            if self.problem is not None and pilot is not None:
                _attempt("stop what the ended pilot left", _reap, pilot.pilot_sandbox)

    # -- listeners and tasks ---------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` about the pilot from now on, starting with its current state."""
        with self._lock:
            self._listeners.append(listener)
            state, problem = self.state, self.problem
        if state is not None:
            listener.pilot_changed(state, problem)

    def forget(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            for uid in [uid for uid, owner in self._owners.items() if owner is listener]:
                del self._owners[uid]

    def submit(self, descriptions: list[dict[str, Any]], listener: Listener) -> None:
        """Submit tasks; their state callbacks go to ``listener``."""
        rp, tmgr = self.rp, self._tmgr
        if tmgr is None:
            raise RuntimeError("the RADICAL-Pilot session is closed")
        with self._lock:
            for td in descriptions:  # before submitting: a callback may come at once
                self._owners[td["uid"]] = listener
        try:
            tmgr.submit_tasks([rp.TaskDescription(td) for td in descriptions])
        except BaseException:
            with self._lock:
                for td in descriptions:
                    self._owners.pop(td["uid"], None)
            raise

    def cancel(self, uids: list[str]) -> None:
        """Ask RADICAL-Pilot to cancel tasks: a message, so this returns at once."""
        tmgr = self._tmgr
        if tmgr is not None and uids:
            tmgr.cancel_tasks(uids)

    def stop(self, uids: list[str]) -> None:
        """Stop running tasks and leave none of their processes behind (blocking).

        In a Slurm job every executable task is an srun step, and RADICAL-Pilot's cancel does
        not end it: it sends srun two SIGINTs, which reach the step's command as SIGINT only,
        and its agent starts commands in the background of a shell, so they ignore SIGINT. The
        shell dies, srun is killed, and the command, orphaned, goes on running (and holding the
        step's cores); under proctrack/linuxproc even the job's end misses it. So a task that
        runs as a step is ended by Slurm (``scancel`` of the step: SIGTERM to every process of
        the step, then SIGKILL), which RADICAL-Pilot sees as the task's end; the others, not
        launched yet or not in a Slurm job, are cancelled through RADICAL-Pilot.
        """
        ended: set[str] = set()
        if self.slurm_job is not None and uids:
            try:
                ended = self._end_steps(uids)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("radical backend: could not end the Slurm steps of %s, so "
                            "RADICAL-Pilot cancels them: %s", ", ".join(uids), exc)
        self.cancel([uid for uid in uids if uid not in ended])

    def _end_steps(self, uids: list[str] | None) -> set[str]:
        """``scancel`` the running steps of tasks ``uids`` (``None``: of every task); the uids
        whose steps were found. RADICAL-Pilot's agent names a task's step after the task's
        ``<uid>.exec.sh``."""
        job = self.slurm_job
        assert job is not None
        wanted = None if uids is None else {f"{uid}.exec.sh": uid for uid in uids}
        found = {step: name for step, name in _batch.steps(job)
                 if wanted is None or name in wanted}
        if found:
            log.debug("radical backend: scancel %s (%s)", " ".join(found),
                      ", ".join(found.values()))
            _batch.scancel(*found)
        return set() if wanted is None else {wanted[name] for name in found.values()}

    # -- RAPTOR ----------------------------------------------------------------------------

    def raptor_master(self) -> str:
        """The uid of the RAPTOR master, submitting it and its workers on first use."""
        with self._serial:
            if self._raptor is not None:
                return self._raptor
            if self._pilot is None:
                raise RuntimeError("the RADICAL-Pilot session is closed")
            rp = self.rp
            tag = secrets.token_hex(3)
            master = f"raptor.{tag}.master"
            workers = [f"raptor.{tag}.worker.{i}" for i in range(self.raptor_workers)]
            probe = _Probe(f"raptor.{tag}.probe")
            with self._lock:  # before any callback can come
                self._raptor_tasks = frozenset([master, *workers])
                self._probe = probe
            self._pilot.submit_raptors([rp.TaskDescription({"uid": master,
                                                            "mode": rp.RAPTOR_MASTER})])
            self._tmgr.submit_workers([rp.TaskDescription(self._worker(uid, master))
                                       for uid in workers])
            # A function task through RAPTOR before any of ours: once it has run, a worker
            # is listening for cancellations (see _worker.py) and can import our runner.
            self._tmgr.submit_tasks([rp.TaskDescription({
                "uid": probe.uid, "mode": rp.TASK_FUNCTION, "raptor_id": master,
                "function": rp.PythonTask(_remote.call, (_remote.pack(int, (), {}),), {})})])
            if not probe.done.wait(RAPTOR_STARTUP_TIMEOUT):
                probe.problem = f"no function task ran within {RAPTOR_STARTUP_TIMEOUT} s"
            if probe.problem is not None:
                _attempt("stop RAPTOR", self.stop, list(self._raptor_tasks))
                with self._lock:
                    self._raptor_tasks, self._probe = frozenset(), None
                raise RuntimeError(f"RAPTOR did not start: {probe.problem}")
            self._raptor, self._probe = master, None
            return master

    def _worker(self, uid: str, master: str) -> dict[str, Any]:
        td = dict(self.raptor_worker)
        # The worker class is loaded from a file in the worker's sandbox: staged there, so it
        # is found on a remote resource too. It imports asyncflow_radical, installed there.
        td["input_staging"] = [*td.get("input_staging", ()), {
            "source": str(_WORKER_FILE), "target": f"task:///{_WORKER_FILE.name}",
            "action": self.rp.TRANSFER}]
        td["environment"] = {**td.get("environment", {}),
                             "PYTHONPATH": _environment.worker_pythonpath()}
        td.update(uid=uid, mode=self.rp.RAPTOR_WORKER, raptor_id=master,
                  raptor_class=_WORKER_CLASS, raptor_file=_WORKER_FILE.name, ranks=1,
                  cores_per_rank=self.raptor_cores_per_worker)
        return td

    # -- RADICAL-Pilot's callbacks, on its threads -----------------------------------------

    def _on_pilot_state(self, pilot: Any, state: str) -> None:
        rp = self.rp
        problem = None
        if state == rp.PMGR_ACTIVE and self._resource_manager == "SLURM":
            job = self.slurm_job = _batch.slurm_job(pilot.pilot_sandbox)
            self.batch_job = None if job is None else f"Slurm job {job}"
        if state in rp.FINAL:
            sandbox = urlparse(pilot.pilot_sandbox or "").path
            problem = {
                rp.DONE: f"its runtime of {self.description.get('runtime')} min may have run out",
                rp.CANCELED: "it was cancelled",
            }.get(state, f"see bootstrap_0.out and agent_0.err in {sandbox}")
            if state == rp.FAILED and "VIRTUAL_ENV" not in os.environ:
                problem += ("; this Python is not a virtualenv, so the agent may have started a "
                            "python3 without radical.pilot")
            job = f" in {self.batch_job}" if self.batch_job else ""
            problem = f"the RADICAL-Pilot pilot {pilot.uid}{job} on {self.resource} ended " \
                      f"{state} ({problem})"
        with self._lock:
            if self._closed:
                return
            self.state, self.problem = state, problem
            listeners = list(self._listeners)
        if problem is not None:
            log.error("radical backend: %s", problem)
        for listener in listeners:
            listener.pilot_changed(state, problem)

    def _on_task_state(self, task: Any, state: str) -> None:
        uid = task.uid
        final = state in self.rp.FINAL
        probe = self._probe
        if probe is not None and uid == probe.uid:
            if final:
                probe.finish(None if state == self.rp.DONE else
                             f"a probe task ended {state}: {_detail(task)}")
            return
        if uid in self._raptor_tasks:
            if final:
                self._raptor_ended(task, state)
            return
        with self._lock:
            owner = self._owners.pop(uid, None) if final else self._owners.get(uid)
        if owner is not None:
            owner.task_changed(task, state)

    def _raptor_ended(self, task: Any, state: str) -> None:
        with self._lock:
            if self._closed or task.uid not in self._raptor_tasks:
                return
            leftovers = list(self._raptor_tasks - {task.uid})
            self._raptor_tasks, self._raptor = frozenset(), None  # the next one starts afresh
            listeners = list(self._listeners)
            probe = self._probe
        problem = f"the RAPTOR task {task.uid} that runs function tasks ended ({state}: " \
                  f"{_detail(task)})"
        if probe is not None:
            probe.finish(problem)
        log.error("radical backend: %s", problem)
        _attempt("stop the rest of RAPTOR", self.stop, leftovers)
        for listener in listeners:
            listener.raptor_lost(problem)


class _Probe:
    """The first function task of a RAPTOR: done when it ends, with what went wrong."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.done = threading.Event()
        self.problem: str | None = None

    def finish(self, problem: str | None) -> None:
        if not self.done.is_set():
            self.problem = problem
            self.done.set()


def _reap(sandbox: str | None) -> None:
    """Stop the agent processes a pilot that ended by itself left on this machine.

    An agent that is killed (not cancelled) can leave a component behind, hung on a queue
    whose other end is gone (seen with RADICAL-Pilot 1.103 on localhost). On a cluster the
    batch system ends such processes with the job; here nobody would.
    """
    url = urlparse(sandbox or "")
    if url.scheme != "file" or url.hostname not in (None, "", "localhost") or not url.path:
        return
    import psutil  # only needed here

    root = url.path.rstrip("/") + "/"
    stale = []
    for process in psutil.process_iter(["name", "cwd"]):
        name, cwd = process.info["name"] or "", process.info["cwd"] or ""
        if name.startswith("rp.") and (cwd + "/").startswith(root):
            stale.append(process)
    for process in stale:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(stale, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _here(endpoint: Any, scheme: str) -> bool:
    """Whether a resource's endpoint URL is this machine's, reached by ``scheme``."""
    url = urlparse(str(endpoint or ""))
    return url.scheme == scheme and url.hostname in (None, "", "localhost", "127.0.0.1")


def _detail(task: Any) -> str:
    return str(task.exception or (task.stderr or "").strip()[-500:] or "no detail")


def import_radical_pilot() -> Any:
    """``radical.pilot``, imported without the warnings of its own import.

    radical.utils warns when the root logger has handlers (as in any configured program) that
    their locks may deadlock a ``fork()``; since Python 3.8 ``logging`` reinitializes them in
    the child itself, so the warning says nothing to an AsyncFlow user. rc.process reads its
    version from a file it does not close (a ResourceWarning).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Import `radical` modules before `logging`")
        warnings.filterwarnings("ignore", category=ResourceWarning)
        return importlib.import_module("radical.pilot")


def _attempt(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    began = time.monotonic()
    try:
        call(*args, **kwargs)
    except Exception:
        log.exception("radical backend: could not %s", what)
    else:
        log.debug("radical backend: %s took %.1f s", what, time.monotonic() - began)
