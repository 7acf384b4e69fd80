"""One task in flight in the backend, as its runner sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from asyncflow.backend import TaskSpec, TaskUpdate

if TYPE_CHECKING:
    from asyncflow_concurrent._threads import _ThreadCall


class Job:
    """A task attempt between ``submit`` and its terminal report.

    A body in a thread pool has a *call*: the worker thread reports for it. Any other task
    has a *driver*: the one asyncio task on the engine's loop that runs it and reports its
    fate; cancelling the driver is how the task is cancelled. The runner calls :meth:`begin`
    (on the engine's loop) when the body actually starts: that reports RUNNING and starts the
    timeout clock, so time spent waiting for a free worker does not count.
    """

    __slots__ = ("call", "deadline", "driver", "finished", "interruptible", "report", "running",
                 "spec")

    def __init__(self, spec: TaskSpec, report: Callable[[TaskUpdate], None]) -> None:
        self.spec = spec
        self.report = report
        self.driver: asyncio.Task[None] | None = None
        self.call: _ThreadCall | None = None
        self.deadline: asyncio.Timeout | None = None
        self.running = False
        self.finished = False  # the terminal report has been sent: nothing more may follow
        self.interruptible = True
        """``False`` while a plain ``def`` body runs in a thread, which nothing can stop."""

    def begin(self, *, arm_deadline: bool = True) -> None:
        """The body has started: report RUNNING once, and start the timeout clock."""
        if self.running or self.finished:
            return
        self.running = True
        self.report(TaskUpdate.running(self.spec.uid))
        timeout = self.spec.timeout
        if arm_deadline and timeout is not None and self.deadline is not None:
            self.deadline.reschedule(asyncio.get_running_loop().time() + timeout)


class Runner(Protocol):
    """Where function bodies run when a driver waits for them: a process pool."""

    closing: bool
    """Set before the backend cancels its jobs at shutdown: no recovery, no resubmission."""

    async def run(self, job: Job) -> Any:
        """Run the job's body and return its value; raise what it raised.

        Cancelling the caller stops the body if the runner can (and says so through
        ``job.interruptible`` if it cannot).
        """

    async def close(self) -> None:
        """Release the pool; every job has been cancelled already."""
