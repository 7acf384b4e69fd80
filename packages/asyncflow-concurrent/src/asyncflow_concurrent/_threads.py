"""Function bodies in a thread pool.

Every body occupies one worker thread while it runs. An ``async def`` body runs on an event
loop that belongs to its thread: created the first time the thread needs one and reused for
every later task of that thread (never a new ``asyncio.run()`` per task), closed when the
backend shuts down. Such a body can be cancelled (its task on that loop is cancelled); a plain
``def`` body cannot: Python has no way to interrupt a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asyncflow_concurrent._job import Job
from asyncflow_concurrent._loops import close_loop

log = logging.getLogger("asyncflow.concurrent")


class ThreadRunner:
    """Runs bodies in ``pool``'s threads and owns the threads' event loops."""

    def __init__(self, pool: ThreadPoolExecutor, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop  # the engine's
        self.closing = False
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _loops and _loops_closed
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._loops_closed = False
        self._calls: set[_ThreadCall] = set()  # submitted and not finished

    async def run(self, job: Job) -> Any:
        call = _ThreadCall(job, self)
        future = self.pool.submit(call)
        call.future = future
        self._calls.add(call)
        future.add_done_callback(lambda _: self._calls.discard(call))
        try:
            return await asyncio.wrap_future(future)
        except BaseException:  # cancelled or timed out (a body's own error needs nothing)
            call.stop()
            raise

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
        self.closing = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        calls = list(self._calls)
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
    loop, concurrently with it, hence the lock."""

    def __init__(self, job: Job, runner: ThreadRunner) -> None:
        self.job = job
        self.runner = runner
        self.future: Future[Any] | None = None
        self.task: asyncio.Task[Any] | None = None  # an async body's task on the thread's loop
        self.started = False
        self.stopped = False
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        spec = self.job.spec
        assert spec.function is not None
        with self._lock:
            if self.stopped:  # cancelled while queued, after the pool had picked it up
                raise asyncio.CancelledError
            loop = None
            if spec.is_coroutine:
                loop = self.runner.thread_loop()
                self.task = loop.create_task(spec.function(*spec.args, **spec.kwargs))
            self.started = True
            self.job.interruptible = loop is not None
        self.runner.loop.call_soon_threadsafe(self.job.begin)
        if loop is None:
            return spec.function(*spec.args, **spec.kwargs)
        assert self.task is not None
        try:
            return loop.run_until_complete(self.task)
        finally:
            self.runner.loop_done(loop)

    def stop(self) -> None:
        """Stop the body if it can be stopped: not started yet, or an ``async def`` body."""
        with self._lock:
            self.stopped = True
            task = self.task
        if task is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: the body is over
                task.get_loop().call_soon_threadsafe(task.cancel)
