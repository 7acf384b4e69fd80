"""Function bodies in a process pool, and keeping that pool alive.

Bodies travel to the workers with cloudpickle (closures work). At most ``max_workers`` of them
are handed to the pool at once, so a task handed over starts at once and a waiting task can be
cancelled without touching a process. Each worker announces the tasks it starts (see
:mod:`asyncflow_concurrent._worker`), so the runner knows which process runs which task.

A process cannot be stopped from inside: cancelling or timing out a running body kills its
worker. A pool whose worker died is broken for good (``BrokenProcessPool``, and the pool
terminates its other workers), so the runner replaces it and decides the fate of every task
that was on it, from the exit codes of its workers:

* the task whose worker was killed on purpose was already settled (cancelled, timed out);
* a task whose worker died on its own fails with :class:`~asyncflow.WorkerLostError`;
* a task that was waiting in the pool, or whose worker was only stopped because the pool
  broke, runs again on the new pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any

import cloudpickle

from asyncflow.errors import WorkerLostError
from asyncflow_concurrent import _worker
from asyncflow_concurrent._job import Job

log = logging.getLogger("asyncflow.concurrent")

# How long a worker may take to end after the broken pool's SIGTERM before it gets SIGKILL
# (only a body that handles SIGTERM itself ever needs it).
_TERMINATE_GRACE = 5.0
# How many broken pools a task may see without its own worker dying before it is given up
# (a pool whose workers cannot even start breaks again at once).
_MAX_FLIGHTS = 4


def new_pool(max_workers: int | None) -> ProcessPoolExecutor:
    """The pool the backend creates for ``executor="processes"``: what
    ``ProcessPoolExecutor(max_workers)`` gives, with the platform's start method (fork on
    Linux before Python 3.14). Pass a pool of your own to choose another.
    """
    return ProcessPoolExecutor(max_workers)


class _Flight:
    """One hand-over of a job to one pool (a job may fly again on a replacement pool)."""

    __slots__ = ("doomed", "future", "job", "lost", "pid", "pool", "ticket")

    def __init__(self, job: Job, pool: ProcessPoolExecutor, ticket: int) -> None:
        self.job = job
        self.pool = pool
        self.ticket = ticket
        self.future: Future[bytes] | None = None
        self.pid: int | None = None  # the worker running it, once it announced itself
        self.doomed = False  # cancelled after the hand-over, before it announced itself
        self.lost: str | None = None  # why its worker died, when that was not collateral


class ProcessRunner:
    """Runs bodies in a process pool, replacing the pool whenever a worker dies."""

    def __init__(self, pool: ProcessPoolExecutor, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.closing = False
        self._slots = asyncio.Semaphore(_max_workers(pool))
        self._tickets = itertools.count(1)
        self._flights: dict[int, _Flight] = {}
        self._killed: dict[int, int] = {}  # pid -> the ticket it was killed for
        self._recoveries: weakref.WeakKeyDictionary[ProcessPoolExecutor, asyncio.Task[None]] = \
            weakref.WeakKeyDictionary()
        self._token = secrets.token_hex(16).encode()
        self._dir = tempfile.mkdtemp(prefix="asyncflow-")  # mode 0700: ours alone
        self._address = os.path.join(self._dir, "starts")
        self._announcements = _Announcements(self, self._address)
        self._abandoned = False  # a body was still running when shutdown began

    # -- running a body --------------------------------------------------------------------

    async def run(self, job: Job) -> Any:
        spec = job.spec
        try:
            payload = cloudpickle.dumps(
                (spec.function, spec.args, dict(spec.kwargs), spec.is_coroutine))
        except Exception as exc:
            raise TypeError(f"task {spec.name!r} ({spec.uid}) cannot be sent to a worker "
                            f"process: {type(exc).__name__}: {exc}") from exc
        async with self._slots:
            for _ in range(_MAX_FLIGHTS):
                pool = self.pool
                flight = _Flight(job, pool, next(self._tickets))
                try:
                    flight.future = pool.submit(_worker.run, payload, self._address,
                                                self._token, flight.ticket)
                except BrokenProcessPool:
                    await self._recover(pool)
                    continue
                self._flights[flight.ticket] = flight
                try:
                    data = await asyncio.wrap_future(flight.future)
                except BrokenProcessPool:
                    await self._recover(pool)
                    if flight.lost is not None or self.closing:
                        raise WorkerLostError(
                            f"task {spec.name!r} ({spec.uid}) was lost: "
                            f"{flight.lost or 'the backend shut down'}") from None
                    log.info("task %s (%s) runs again: its process pool broke before it "
                             "finished", spec.name, spec.uid)
                    continue
                except BaseException:  # cancelled or timed out: stop the body
                    self._stop(flight)
                    raise
                finally:
                    if not flight.doomed:
                        self._flights.pop(flight.ticket, None)
                return _worker.unpack(data)
        raise WorkerLostError(f"task {spec.name!r} ({spec.uid}) was lost: its process pool "
                              f"broke {_MAX_FLIGHTS} times before it could finish")

    def started(self, ticket: int, pid: int) -> None:
        """A worker announced that it started the flight ``ticket``."""
        flight = self._flights.get(ticket)
        if flight is None:
            return
        flight.pid = pid
        if flight.doomed:
            self._kill(flight)
        else:
            flight.job.begin()

    def _stop(self, flight: _Flight) -> None:
        future = flight.future
        assert future is not None
        if future.done():  # never ran, or finished anyway
            return
        if self.closing:  # close() takes the whole pool down
            self._abandoned = True
            return
        if flight.pid is not None:
            self._kill(flight)
            return
        # Handed over and not announced yet: kill it when it announces itself.
        flight.doomed = True
        self._flights[flight.ticket] = flight
        future.add_done_callback(lambda _: self.loop.call_soon_threadsafe(
            self._flights.pop, flight.ticket, None))

    def _kill(self, flight: _Flight) -> None:
        assert flight.pid is not None
        self._killed[flight.pid] = flight.ticket
        with contextlib.suppress(ProcessLookupError):
            os.kill(flight.pid, signal.SIGKILL)
        self._flights.pop(flight.ticket, None)
        self._recover(flight.pool)  # replace the pool now, not at the next task

    # -- recovery from a broken pool -------------------------------------------------------

    def _recover(self, pool: ProcessPoolExecutor) -> asyncio.Future[None]:
        """Replace ``pool`` (once) and settle the fate of its flights; await the result."""
        recovery = self._recoveries.get(pool)
        if recovery is None:
            if pool is self.pool and not self.closing:
                self.pool = _pool_like(pool)
            recovery = self.loop.create_task(self._reap(pool), name="asyncflow pool recovery")
            self._recoveries[pool] = recovery
        return asyncio.shield(recovery)

    async def _reap(self, pool: ProcessPoolExecutor) -> None:
        workers = _workers(pool)
        exit_codes = await asyncio.to_thread(_join, pool, workers)
        on_purpose = {pid for pid in exit_codes if pid in self._killed}
        died = {pid: code for pid, code in exit_codes.items()
                if pid not in on_purpose and code not in (0, -signal.SIGTERM, None)}
        running = [f for f in self._flights.values()
                   if f.pool is pool and f.pid is not None and not f.doomed]
        for flight in running:
            if flight.pid in died:
                flight.lost = (f"its worker process (pid {flight.pid}) "
                               f"{_how(died[flight.pid])} while running it")
            elif not died and not on_purpose:  # no culprit found: any of them may be it
                flight.lost = ("its process pool broke while it ran (a worker process died; "
                               "which one could not be told)")
        for pid in exit_codes:
            self._killed.pop(pid, None)
        if died or not on_purpose:
            log.warning("a worker of the process pool died; the pool was replaced (worker "
                        "exit codes: %s)", exit_codes or "unknown")
        else:
            log.info("the process pool was replaced after a task's worker was stopped")

    # -- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        self.closing = True
        pool = self.pool
        workers = _workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        if self._flights or self._abandoned:  # bodies still running: nothing waits for them
            for process in workers.values():
                process.kill()
        await asyncio.to_thread(_join, pool, workers)
        recoveries = list(self._recoveries.values())
        if recoveries:
            await asyncio.gather(*recoveries, return_exceptions=True)
        self._announcements.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class _Announcements:
    """The local socket the workers announce on: a token line, then ``<ticket> <pid>`` lines.

    Accepting and reading happen inside the loop's reader callbacks, not in tasks, so closing
    it closes every connection at once: none can be half-accepted (asyncio's own server can
    be closed between accepting a connection and making its transport, which then leaks).
    """

    def __init__(self, runner: ProcessRunner, address: str) -> None:
        self.runner = runner
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen()
        self.listener.setblocking(False)
        self.buffers: dict[socket.socket, bytes] = {}
        self.trusted: set[socket.socket] = set()  # sent the token: one of our workers
        runner.loop.add_reader(self.listener, self._accept)

    def _accept(self) -> None:
        try:
            channel, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        channel.setblocking(False)
        self.buffers[channel] = b""
        self.runner.loop.add_reader(channel, self._read, channel)

    def _read(self, channel: socket.socket) -> None:
        try:
            data = channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker ended
            self._drop(channel)
            return
        *lines, self.buffers[channel] = (self.buffers[channel] + data).split(b"\n")
        for line in lines:
            if channel not in self.trusted:  # only our workers know the token
                if not hmac.compare_digest(line, self.runner._token):
                    self._drop(channel)
                    return
                self.trusted.add(channel)
                continue
            ticket, pid = line.split()
            self.runner.started(int(ticket), int(pid))

    def _drop(self, channel: socket.socket) -> None:
        self.runner.loop.remove_reader(channel)
        self.buffers.pop(channel, None)
        self.trusted.discard(channel)
        channel.close()

    def close(self) -> None:
        self.runner.loop.remove_reader(self.listener)
        self.listener.close()
        for channel in list(self.buffers):
            self._drop(channel)


def _max_workers(pool: ProcessPoolExecutor) -> int:
    # Not public, but set by every ProcessPoolExecutor since Python 3.2.
    return int(getattr(pool, "_max_workers", None) or os.cpu_count() or 1)


def _workers(pool: ProcessPoolExecutor) -> dict[int, BaseProcess]:
    # The pool's worker processes by pid. ProcessPoolExecutor does not expose them, yet they
    # are the only way to tell a worker that died from one the broken pool terminated.
    return dict(getattr(pool, "_processes", None) or {})


def _pool_like(pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """A fresh pool configured like ``pool``."""
    return ProcessPoolExecutor(
        max_workers=_max_workers(pool),
        mp_context=getattr(pool, "_mp_context", None),
        initializer=getattr(pool, "_initializer", None),
        initargs=getattr(pool, "_initargs", ()),
        max_tasks_per_child=getattr(pool, "_max_tasks_per_child", None),
    )


def _join(pool: ProcessPoolExecutor, workers: dict[int, BaseProcess]) -> dict[int, int | None]:
    """Wait for a pool's workers to end (killing any that outstays the grace period) and for
    the pool's own thread; return the workers' exit codes. Runs in a thread."""
    for process in workers.values():
        process.join(_TERMINATE_GRACE)
    for process in workers.values():
        if process.exitcode is None:
            process.kill()
            process.join()
    pool.shutdown(wait=True)
    return {pid: process.exitcode for pid, process in workers.items()}


def _how(exit_code: int) -> str:
    if exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-exit_code).name}"
    return f"exited with code {exit_code}"
