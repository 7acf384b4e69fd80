"""Function bodies in a thread pool.

Every body occupies one worker thread while it runs. An ``async def`` body runs on an event
loop that belongs to its thread: created the first time the thread needs one and reused for
every later task of that thread (never a new ``asyncio.run()`` per task), closed when the
backend shuts down. Such a body can be cancelled (its task on that loop is cancelled); a plain
``def`` body cannot: Python has no way to interrupt a thread.

No asyncio task waits for a thread: the worker thread itself reports RUNNING and the body's
outcome. Its reports queue in an outbox that one callback on the engine's loop drains, so
reports that arrive together cost the loop one wake-up, not one each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asyncflow.backend import TaskUpdate
from asyncflow_concurrent._job import Job
from asyncflow_concurrent._loops import close_loop

log = logging.getLogger("asyncflow.concurrent")

Deliver = Callable[[Job, TaskUpdate], None]
"""Receives a worker thread's report about a job, on the engine's loop."""


class ThreadRunner:
    """Runs bodies in ``pool``'s threads and owns the threads' event loops."""

    def __init__(self, pool: ThreadPoolExecutor, loop: asyncio.AbstractEventLoop,
                 deliver: Deliver) -> None:
        self.pool = pool
        self.loop = loop  # the engine's
        self.closing = False
        self.calls: set[_ThreadCall] = set()  # submitted and not finished
        self.calls_lock = threading.Lock()  # guards every call's started/stopped/task
        self._deliver = deliver
        self._outbox: collections.deque[tuple[Job, TaskUpdate]] = collections.deque()
        self._drain_scheduled = False
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _loops and _loops_closed
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._loops_closed = False

    def submit(self, job: Job) -> None:
        """Queue the job's body for a worker thread; its reports come through ``deliver``."""
        call = _ThreadCall(job, self)
        job.call = call
        self.calls.add(call)
        try:
            call.future = self.pool.submit(call)
        except BaseException:
            self.calls.discard(call)
            raise

    def post(self, job: Job, update: TaskUpdate) -> None:
        """Called by a worker thread: hand ``update`` to the engine's loop."""
        self._outbox.append((job, update))
        if self._drain_scheduled:  # a drain is due and will find it (it resets the flag first)
            return
        self._drain_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            if not self.loop.is_closed():
                raise
            # A body that finished after its engine's loop ended: nobody is left to tell.

    def _drain(self) -> None:
        self._drain_scheduled = False
        outbox, deliver = self._outbox, self._deliver
        while outbox:
            job, update = outbox.popleft()
            deliver(job, update)

    def thread_loop(self) -> asyncio.AbstractEventLoop:
        """The calling worker thread's event loop, created on its first use."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            with self._lock:
                self._loops.append(loop)
        return loop

    def loop_done(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by a worker thread after its loop ran a body: close it if shutdown came."""
        with self._lock:
            closed = self._loops_closed
        if closed:
            close_loop(loop)

    async def close(self) -> None:
        """Release the pool; every job has been settled already."""
        self.closing = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        calls = list(self.calls)
        stuck = [c for c in calls if c.started and c.task is None]
        if stuck:
            log.warning("%d task bodies still run in threads after shutdown (%s); Python threads "
                        "cannot be interrupted, they end when the bodies return", len(stuck),
                        ", ".join(c.job.spec.uid for c in stuck))
        # Coroutine bodies were cancelled on their threads' loops: let them unwind first.
        unwinding = [asyncio.wrap_future(c.future) for c in calls
                     if c.task is not None and c.future is not None]
        if unwinding:
            await asyncio.gather(*unwinding, return_exceptions=True)
        await asyncio.to_thread(self._close_loops)

    def _close_loops(self) -> None:
        with self._lock:
            self._loops_closed = True
            loops, self._loops = self._loops, []
        for loop in loops:
            if not loop.is_running():  # a running one is closed by its thread (loop_done)
                close_loop(loop)


class _ThreadCall:
    """The callable a worker thread runs for one job; :meth:`stop` is called on the engine's
    loop, concurrently with it, hence the runner's ``calls_lock``."""

    __slots__ = ("future", "job", "runner", "started", "stopped", "task", "timer")

    def __init__(self, job: Job, runner: ThreadRunner) -> None:
        self.job = job
        self.runner = runner
        self.future: Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None  # an async body's task on the thread's loop
        self.started = False
        self.stopped = False
        self.timer: asyncio.TimerHandle | None = None  # the timeout, on the engine's loop

    def __call__(self) -> None:
        job, runner = self.job, self.runner
        update: TaskUpdate | None
        try:
            update = self._run()
        except asyncio.CancelledError:
            update = TaskUpdate.cancelled(job.spec.uid)
        except BaseException as exc:  # the task failed, not the worker thread
            update = TaskUpdate.failed(job.spec.uid, exc)
        finally:
            runner.calls.discard(self)
        if update is not None:
            runner.post(job, update)

    def _run(self) -> TaskUpdate | None:
        job, runner = self.job, self.runner
        spec = job.spec
        assert spec.function is not None
        loop = None
        with runner.calls_lock:
            if self.stopped:  # settled on the engine's loop while it waited for a thread
                return None
            if spec.is_coroutine:
                loop = runner.thread_loop()
                self.task = loop.create_task(spec.function(*spec.args, **spec.kwargs))
            self.started = True
            job.interruptible = loop is not None
        runner.post(job, TaskUpdate.running(spec.uid))
        if loop is None:
            return TaskUpdate.done(spec.uid, spec.function(*spec.args, **spec.kwargs))
        assert self.task is not None
        try:
            return TaskUpdate.done(spec.uid, loop.run_until_complete(self.task))
        finally:
            runner.loop_done(loop)

    def stop(self) -> bool:
        """Stop the body if it can be: not started yet, or an ``async def`` body.

        Returns:
            ``False`` for a plain ``def`` body that has started: it runs to its end.
        """
        with self.runner.calls_lock:
            if self.started and self.task is None:
                return False
            self.stopped = True
            task = self.task
        if task is None:  # still queued: it never runs
            self.runner.calls.discard(self)
            if self.future is not None:
                self.future.cancel()
        else:
            with contextlib.suppress(RuntimeError):  # its loop closed: the body is over
                task.get_loop().call_soon_threadsafe(task.cancel)
        return True
