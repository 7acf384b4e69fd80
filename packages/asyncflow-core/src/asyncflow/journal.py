"""The run journal: every state change of a run, in an SQLite file any tool can read.

``WorkflowEngine.create(journal=True)`` writes ``<work_dir>/<engine uid>/journal.sqlite``;
nothing is written to disk without it. Why SQLite (Python's own :mod:`sqlite3`) rather than
JSON lines: a commit is atomic, so a run killed with SIGKILL leaves a readable journal whose
last transaction is whole; a reader (``asyncflow report``, ``sqlite3``, pandas, DuckDB) can
read while the run writes (WAL mode); and resuming looks a result up by key in an index
instead of reading the whole history.

Tables (see ``SCHEMA``): ``sessions`` (each start of the run; a resumed run adds one),
``events`` (one row per state change: PENDING when a task is created and again before each
retry, RUNNING, DONE, FAILED, CANCELLED, with the time, attempt, backend, block, workflow,
exit code and error), ``dependencies`` (which task waits for which) and ``results`` (pickled
results by key, kept when the run may be resumed).

Writing stays off the event loop: observers append rows to a list, the list is handed once per
loop iteration to a writer thread, and that thread commits each batch in one transaction.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import queue
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.task import BLOCK, EXECUTABLE
from asyncflow._resume import cache_key, dumps
from asyncflow.backend import TaskState
from asyncflow.errors import RunInUseError
from asyncflow.hookspecs import hookimpl

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine
    from asyncflow._kernel.task import TaskFuture, TaskRecord

__all__ = ["FILENAME", "Journal", "Run", "TaskRun", "find_run", "read_run"]

log = logging.getLogger("asyncflow.journal")

FILENAME = "journal.sqlite"
LOCKNAME = "journal.lock"  # held by the process that runs the run

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session  INTEGER PRIMARY KEY,  -- 1 for the first start of the run, 2 for its first resume
    engine   TEXT NOT NULL,        -- the engine's uid, also the run directory's name
    script   TEXT,                 -- sys.argv[0], resolved: which workflow this is
    host     TEXT,
    pid      INTEGER,
    backends TEXT,                 -- JSON list of backend names, the default first
    dry_run  INTEGER,
    started  REAL NOT NULL,        -- seconds since the epoch
    stopped  REAL,
    error    TEXT                  -- what stopped the engine, if anything did
);
CREATE TABLE IF NOT EXISTS events (
    session    INTEGER NOT NULL,
    time       REAL NOT NULL,
    uid        TEXT NOT NULL,      -- task.000001, block.000001 (unique within a session)
    name       TEXT,               -- the function's name
    function   TEXT,               -- module:qualname of the function
    kind       TEXT,               -- function, executable, prompt or block
    block      TEXT,               -- uid of the enclosing block
    backend    TEXT,
    state      TEXT NOT NULL,      -- PENDING, RUNNING, DONE, FAILED, CANCELLED; EXITED: a
                                   -- ready service (DONE) that ended on its own later
    attempt    INTEGER,
    exit_code  INTEGER,            -- executables: 0 when DONE, the code when it failed
    error_type TEXT,               -- FAILED, or PENDING again after a failed attempt
    error      TEXT,
    resumed    INTEGER,            -- 1: DONE with the result of an earlier session
    cache_key  TEXT,
    workflow   TEXT                -- its workflow scope: workflow_scope(), a block's uid...
);
CREATE INDEX IF NOT EXISTS events_by_task ON events (session, uid);
CREATE TABLE IF NOT EXISTS dependencies (
    session    INTEGER NOT NULL,
    uid        TEXT NOT NULL,
    dependency TEXT NOT NULL       -- uid of a task whose result ``uid`` takes
);
CREATE TABLE IF NOT EXISTS results (
    cache_key TEXT PRIMARY KEY,
    session   INTEGER NOT NULL,
    uid       TEXT NOT NULL,
    name      TEXT,
    time      REAL NOT NULL,
    value     BLOB NOT NULL        -- pickle (cloudpickle when plain pickle cannot)
);
"""

_EVENT_COLUMNS = 16
# Columns added after the first journals were written: (name, type), appended in this order.
_ADDED_COLUMNS = (("workflow", "TEXT"),)
_ERROR_CHARS = 2000  # an error message longer than this is cut: the journal is not a log


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    else:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        conn.execute("PRAGMA synchronous=NORMAL")  # a commit survives a killed process
    return conn


class Journal:
    """The journal of one engine's run: open in :meth:`WorkflowEngine.create`, closed by the
    engine's ``asyncflow_engine_stopped`` observer.

    Args:
        run_dir: the run's folder; created if missing.
        engine: the engine whose run this is.
        resume: look up results of earlier sessions (``lookup``) and store this session's.
    """

    def __init__(self, run_dir: Path, engine: WorkflowEngine, *, resume: bool = False,
                 lock: int | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / FILENAME
        self._lock = lock if lock is not None else lock_run(run_dir, engine.uid)
        self.resume = resume
        self.store_results = resume and not engine.dry_run  # a dry run's results are dummies
        self._loop = engine.loop
        try:
            self.session: int = self._start_session(engine, resume)
        except BaseException:
            os.close(self._lock)
            raise
        self._reader = _connect(self.path) if resume else None  # lookups, on the loop thread
        self._events: list[tuple[Any, ...]] = []
        self._dependencies: list[tuple[Any, ...]] = []
        self._results: list[tuple[Any, ...]] = []
        self._handoff_scheduled = False
        self._batches: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name=f"asyncflow journal {engine.uid}",
                                        daemon=True)
        self._writer.start()
        self._closed = False

    def _start_session(self, engine: WorkflowEngine, resume: bool) -> int:
        conn = _connect(self.path)
        try:
            with conn:
                conn.executescript(SCHEMA)
                _add_columns(conn)
                session: int = conn.execute(
                    "INSERT INTO sessions (engine, script, host, pid, backends, dry_run, started)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING session",
                    (engine.uid, _script(), socket.gethostname(), os.getpid(),
                     json.dumps(list(engine.backends)), int(engine.dry_run), time.time()),
                ).fetchone()[0]
            if resume and session > 1:
                _warn_if_nothing_to_resume(conn, engine.uid, session)
        finally:
            conn.close()
        return session

    # -- the loop side: cheap appends, one hand-off per loop iteration ---------------------

    def task_created(self, task: TaskRecord, dependencies: Sequence[TaskFuture[Any]]) -> None:
        session, uid = self.session, task.uid
        if dependencies:
            self._dependencies.extend(
                {(session, uid, dep.uid) for dep in dependencies})
        self._add(task, TaskState.PENDING)

    def task_changed(self, task: TaskRecord, new: TaskState) -> None:
        if new is TaskState.DONE and self.store_results and task.cache_key is not None \
                and not task.resumed:
            self._store(task)
        self._add(task, new)

    def service_exited(self, service: TaskFuture[Any], error: BaseException | None) -> None:
        self._events.append((
            self.session, time.time(), service.uid, service.name, None, None, None, None,
            "EXITED", None, getattr(error, "exit_code", None),
            type(error).__name__ if error is not None else None,
            str(error)[:_ERROR_CHARS] if error is not None else None, 0, None,
            service.workflow_id,
        ))
        if not self._handoff_scheduled:
            self._handoff_scheduled = True
            self._loop.call_soon(self._hand_off)

    def _add(self, task: TaskRecord, state: TaskState) -> None:
        exit_code = error_type = error = None
        failed = task.error if state is TaskState.FAILED or (
            state is TaskState.PENDING and task.attempt > 1) else None
        if failed is not None:
            error_type = type(failed).__name__
            error = str(failed)[:_ERROR_CHARS]
            exit_code = getattr(failed, "exit_code", None)
        elif state is TaskState.DONE and task.kind == EXECUTABLE and not task.resumed:
            exit_code = 0
        fn = task.fn
        self._events.append((
            self.session, time.time(), task.uid, task.name,
            f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', task.name)}",
            task.kind, task.block, task.backend, state.value, task.attempt, exit_code,
            error_type, error, int(task.resumed), task.cache_key, task.workflow_id,
        ))
        if not self._handoff_scheduled:
            self._handoff_scheduled = True
            self._loop.call_soon(self._hand_off)

    def _store(self, task: TaskRecord) -> None:
        try:
            value = dumps(task.future.result())
        except Exception as exc:  # an unpicklable result: the task will run again on resume
            log.warning("task %s (%s): its result cannot be pickled (%s: %s); a resumed run "
                        "will run it again", task.name, task.uid, type(exc).__name__, exc)
            return
        self._results.append((task.cache_key, self.session, task.uid, task.name, time.time(),
                              value))

    def _hand_off(self) -> None:
        self._handoff_scheduled = False
        batch = (self._events, self._dependencies, self._results)
        self._events, self._dependencies, self._results = [], [], []
        self._batches.put(("write", batch))

    def recall(self, task: TaskRecord) -> tuple[bool, Any]:
        """Give ``task`` its cache key; ``(True, result)`` if an earlier session of this run
        completed the same call.
        """
        key = cache_key(task)
        if key is None:
            return False, None
        task.cache_key = task.future._cache_key = key
        return self.lookup(key)

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, result)`` if an earlier session of this run stored a result for ``key``."""
        if self._reader is None:
            return False, None
        try:
            row = self._reader.execute("SELECT value FROM results WHERE cache_key = ? AND "
                                       "session < ?", (key, self.session)).fetchone()
        except sqlite3.Error as exc:  # the task runs again rather than the engine failing
            log.warning("cannot look %s up in %s: %s; running the task", key, self.path, exc)
            return False, None
        if row is None:
            return False, None
        try:
            return True, pickle.loads(row[0])
        except Exception as exc:
            log.warning("the recorded result for %s cannot be unpickled (%s: %s); running the "
                        "task again", key, type(exc).__name__, exc)
            return False, None

    def close(self, error: BaseException | None = None, timeout: float = 30.0) -> None:
        """Write what is left, mark the session stopped, and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._hand_off()
        stopped = (time.time(), None if error is None else f"{type(error).__name__}: {error}")
        self._batches.put(("stop", stopped))
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error("the journal writer did not finish within %ss: %s", timeout, self.path)
        if self._reader is not None:
            self._reader.close()
        os.close(self._lock)  # the run is free for the next process

    # -- the writer thread -----------------------------------------------------------------

    def _write(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                what, payload = self._batches.get()
                try:
                    with conn:  # one transaction per batch: all of it or none survives a kill
                        if what == "stop":
                            conn.execute("UPDATE sessions SET stopped = ?, error = ? WHERE "
                                         "session = ?", (*payload, self.session))
                        else:
                            events, dependencies, results = payload
                            conn.executemany(
                                f"INSERT INTO events VALUES ({_marks(_EVENT_COLUMNS)})", events)
                            conn.executemany("INSERT INTO dependencies VALUES (?, ?, ?)",
                                             dependencies)
                            conn.executemany(f"INSERT OR REPLACE INTO results VALUES "
                                             f"({_marks(6)})", results)
                except sqlite3.Error:
                    log.exception("cannot write the run journal %s; the run goes on", self.path)
                if what == "stop":
                    return
        finally:
            conn.close()


def _add_columns(conn: sqlite3.Connection) -> None:
    """Bring the events table of a journal an older version wrote (a run being resumed) up
    to this version's columns."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")


def lock_run(run_dir: Path, uid: str) -> int:
    """Lock the run for this process (an exclusive ``flock`` on ``run_dir/LOCKNAME``, which
    the system drops when the process ends, however it ends); returns the lock's descriptor.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunInUseError(f"run {uid!r} ({run_dir}) is in use by {holder}; two processes "
                            "cannot run or resume one run at once: wait for it to end, or "
                            "start a run of your own (another uid)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
    return fd


def _warn_if_nothing_to_resume(conn: sqlite3.Connection, uid: str, session: int) -> None:
    """Resuming a run whose earlier sessions stored no results runs every task again: say so."""
    stored = conn.execute("SELECT EXISTS (SELECT 1 FROM results)").fetchone()[0]
    completed = conn.execute("SELECT EXISTS (SELECT 1 FROM events WHERE session < ? AND "
                             "state = 'DONE' AND kind != ?)", (session, BLOCK)).fetchone()[0]
    if completed and not stored:
        log.warning("run %r has no stored results to resume from (it was journaled without "
                    "resume=True, which is what keeps them): every task runs again", uid)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _script() -> str:
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return str(Path(main).resolve()) if main and main != "-c" else main


# -- finding a run to resume ---------------------------------------------------------------


def find_run(work_dir: Path, resume: bool | str, uid: str | None) -> str | None:
    """The uid of the run to resume in ``work_dir``, or ``None`` to start a new one.

    ``resume`` names a run (its uid), or is ``True``: then ``uid`` if given, else the most
    recent run of the same script (``sys.argv[0]``) that has a journal.
    """
    if isinstance(resume, str):
        if not (work_dir / resume / FILENAME).exists():
            raise FileNotFoundError(f"resume={resume!r}: there is no run journal "
                                    f"{work_dir / resume / FILENAME}")
        return resume
    if uid is not None:
        return uid
    script, best, best_started = _script(), None, -1.0
    for path in work_dir.glob(f"*/{FILENAME}"):
        try:
            conn = _connect(path, read_only=True)
            try:
                row = conn.execute("SELECT max(started) FROM sessions WHERE script = ?",
                                   (script,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            log.warning("skipping unreadable run journal %s: %s", path, exc)
            continue
        if row and row[0] is not None and row[0] > best_started:
            best, best_started = path.parent.name, row[0]
    return best


# -- the observer plugin ---------------------------------------------------------------------


class JournalPlugin:
    """One engine's observer that writes its state changes to its :class:`Journal`, opened
    when the engine starts and closed when it stops; with ``resume``, also the engine's
    result store (:meth:`recall`). ``create(journal=True)`` or ``resume=`` adds it.
    """

    plugin_name = "asyncflow.journal"

    def __init__(self, *, resume: bool = False, run: tuple[Path, str] | None = None) -> None:
        self.resume = resume
        self.journal: Journal | None = None
        # A run known before the engine starts (a resumed one, a given uid) is locked now, so
        # that create() refuses a run another process holds before any backend starts.
        self._lock = lock_run(*run) if run is not None else None

    @hookimpl
    def asyncflow_engine_started(self, engine: WorkflowEngine) -> None:
        lock, self._lock = self._lock, None
        self.journal = Journal(engine.work_dir / engine.uid, engine, resume=self.resume,
                               lock=lock)

    @hookimpl
    def asyncflow_task_created(self, task: TaskRecord,
                               dependencies: Sequence[TaskFuture[Any]]) -> None:
        if self.journal is not None:
            self.journal.task_created(task, dependencies)

    @hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, new: TaskState) -> None:
        if self.journal is not None:
            self.journal.task_changed(task, new)

    @hookimpl
    def asyncflow_service_exited(self, service: TaskFuture[Any],
                                 error: BaseException | None) -> None:
        if self.journal is not None:
            self.journal.service_exited(service, error)

    @hookimpl
    def asyncflow_engine_stopped(self, error: BaseException | None) -> None:
        if self.journal is not None:
            self.journal.close(error)
        elif self._lock is not None:  # the engine failed to start: free the run
            os.close(self._lock)
            self._lock = None

    def recall(self, task: TaskRecord) -> tuple[bool, Any]:
        """An earlier session's result of ``task``'s call, as the engine's result store."""
        if self.journal is None:
            return False, None
        return self.journal.recall(task)


# -- reading a journal -----------------------------------------------------------------------


@dataclass
class TaskRun:
    """One task or block of a session, folded from its events."""

    uid: str
    name: str
    kind: str
    function: str
    block: str | None = None
    workflow: str | None = None
    """The workflow scope it was called in (a block's members: the block's uid)."""
    backend: str | None = None
    state: str = TaskState.PENDING.value
    created: float | None = None
    started: float | None = None  # first RUNNING
    finished: float | None = None  # terminal state
    attempts: int = 1
    exit_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    resumed: bool = False
    dependencies: list[str] = field(default_factory=list)
    failed_attempts: list[tuple[float, int, str | None, str | None]] = field(
        default_factory=list)  # (time, attempt that failed, error type, error)
    exited: tuple[float, int | None, str | None] | None = None
    """A service that ended on its own after it was ready: (time, exit code, error)."""

    @property
    def duration(self) -> float | None:
        """Seconds from the first RUNNING to the end, when both are known."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass
class Run:
    """A run read back from its journal: its sessions, and the tasks of one session."""

    path: Path
    uid: str
    session: int
    sessions: list[dict[str, Any]]
    tasks: dict[str, TaskRun]

    @property
    def info(self) -> dict[str, Any]:
        """The row of :attr:`session` in the ``sessions`` table."""
        return next(s for s in self.sessions if s["session"] == self.session)


def read_run(run_dir: str | Path, session: int | None = None) -> Run:
    """Read the journal in ``run_dir`` (a run folder, or the journal file itself).

    Args:
        run_dir: ``<work_dir>/<engine uid>``, or the path of its ``journal.sqlite``.
        session: which start of the run to read; the latest by default.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no run journal at {path} (runs write one with "
                                "WorkflowEngine.create(journal=True) or asyncflow run --journal)")
    conn = _connect(path, read_only=True)
    conn.row_factory = sqlite3.Row
    try:
        sessions = [dict(r) for r in conn.execute("SELECT * FROM sessions ORDER BY session")]
        if not sessions:
            raise ValueError(f"{path} records no session")
        chosen = sessions[-1]["session"] if session is None else session
        if chosen not in {s["session"] for s in sessions}:
            raise ValueError(f"{path} has sessions {[s['session'] for s in sessions]}, not "
                             f"{chosen}")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        tasks = _fold(conn.execute("SELECT * FROM events WHERE session = ? ORDER BY rowid",
                                   (chosen,)), has_workflow="workflow" in columns)
        for uid, dependency in conn.execute(
                "SELECT uid, dependency FROM dependencies WHERE session = ?", (chosen,)):
            if uid in tasks:
                tasks[uid].dependencies.append(dependency)
    finally:
        conn.close()
    uid = next(s["engine"] for s in sessions if s["session"] == chosen)
    return Run(path, uid, chosen, sessions, tasks)


def _fold(events: Iterable[sqlite3.Row], has_workflow: bool = True) -> dict[str, TaskRun]:
    tasks: dict[str, TaskRun] = {}
    for e in events:
        task = tasks.get(e["uid"])
        if task is None:
            workflow = e["workflow"] if has_workflow else None  # older journals have none
            task = tasks[e["uid"]] = TaskRun(e["uid"], e["name"], e["kind"], e["function"],
                                             block=e["block"], workflow=workflow,
                                             created=e["time"])
        state = e["state"]
        if state == "EXITED":  # after the service's DONE, which stays its state
            task.exited = (e["time"], e["exit_code"], e["error"])
            continue
        task.state = state
        task.attempts = max(task.attempts, e["attempt"] or 1)
        task.backend = e["backend"] or task.backend
        if state == "RUNNING" and task.started is None:
            task.started = e["time"]
        elif state == "PENDING" and e["error_type"] is not None:
            task.failed_attempts.append((e["time"], e["attempt"] - 1, e["error_type"],
                                         e["error"]))
        elif state in ("DONE", "FAILED", "CANCELLED"):
            task.finished = e["time"]
            task.exit_code = e["exit_code"]
            task.error_type, task.error = e["error_type"], e["error"]
            task.resumed = bool(e["resumed"])
            if task.kind == BLOCK and task.started is None:
                task.started = task.created
    return tasks
