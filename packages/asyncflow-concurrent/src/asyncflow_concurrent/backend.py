"""``ConcurrentExecutionBackend``: tasks run on this machine, where the executor given says.

============================  ==========================================  ======================
``executor``                  ``async def`` bodies                        plain ``def`` bodies
============================  ==========================================  ======================
none (the default)            coroutines on the engine's event loop       a thread pool
``ThreadPoolExecutor``        a worker thread each, on that thread's       a worker thread each
                              persistent event loop
``ProcessPoolExecutor``       a worker process each, on that process's     a worker process each
                              persistent event loop
============================  ==========================================  ======================

Prompt tasks are answered by the completion function given as ``prompt=``, on the engine's
loop when it is ``async def``, in a thread otherwise, in every mode.

Executable tasks run as child processes of this process in every mode, driven from the
engine's loop by :func:`asyncflow.executables.run` (their own process group, killed on cancel
and timeout).

A function body in a thread pool has no asyncio task: its worker thread reports RUNNING and
the outcome, and the engine's loop settles it early on cancel or timeout. Every other task is
driven by one asyncio task on the engine's loop: cancelling that driver cancels the task, and
the driver's end is the one terminal report. Either way the task is held in ``_jobs`` until
it has reported its fate, and the first terminal report is the only one.

On Python 3.12 and later a driver is an eager task (unless the loop has a task factory of its
own): it starts inside ``submit`` and runs until its body first waits, so a body that never
waits finishes without costing the loop an iteration.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from asyncflow import executables
from asyncflow.backend import (
    Capabilities,
    ExecutionBackend,
    TaskKind,
    TaskSpec,
    TaskState,
    TaskUpdate,
)
from asyncflow.errors import CapabilityError, TaskTimeoutError
from asyncflow_concurrent import _prompts
from asyncflow_concurrent._job import Job, Runner
from asyncflow_concurrent._prompts import Completion

if TYPE_CHECKING:
    from asyncflow_concurrent._services import Service
    from asyncflow_concurrent._threads import ThreadRunner

__all__ = ["ConcurrentExecutionBackend", "LocalExecutionBackend"]

log = logging.getLogger("asyncflow.concurrent")

Mode = Literal["loop", "threads", "processes"]

_THREAD_NOTE = ("; its body keeps running in its thread until it returns (Python threads "
                "cannot be interrupted)")


class ConcurrentExecutionBackend(ExecutionBackend):
    """Run tasks on this machine: on the event loop, in threads, or in worker processes.

    Args:
        executor: Where function bodies run. ``None`` (the default): ``async def`` bodies run
            on the engine's event loop and plain ``def`` bodies in a thread pool. A
            ``ThreadPoolExecutor``: every body occupies one of its threads (``async def``
            bodies on that thread's own event loop). A ``ProcessPoolExecutor``: every body
            runs in one of its worker processes, sent there with cloudpickle. The strings
            ``"threads"`` and ``"processes"`` make the backend create that pool (for
            configuration files). The backend shuts the executor down with itself.
        max_workers: Size of the pool the backend creates (the thread pool for plain bodies
            when ``executor`` is ``None``); not allowed with an executor instance.
        prompt: What answers prompt tasks: a function ``(prompt, description) -> answer``,
            ``async def`` (awaited on the engine's loop) or plain ``def`` (run in a thread),
            or its name ``"package.module:function"`` (for configuration files).
            ``description`` is the task's merged ``task_description``. Without it, a prompt
            task fails with :class:`~asyncflow.CapabilityError` (a ``NotImplementedError``
            too, as RADICAL AsyncFlow's ``LocalExecutionBackend`` raised) saying how to give
            one.
        service_grace: Seconds a service task's process group has between SIGTERM and
            SIGKILL when the backend stops it.

    Service tasks (``service=True``) run as their own process group, or, for an ``async def``
    function service in the default mode, as a task on the event loop (see
    :mod:`asyncflow.services`).

    Cancelling or timing out a task stops its body, except a plain ``def`` body running in
    a thread: threads cannot be interrupted, so such a task is settled at once (cancelled, or
    failed with :class:`~asyncflow.TaskTimeoutError`) while the thread runs the body to its end.
    """

    name = "concurrent"
    capabilities = Capabilities(
        function_tasks=True,
        executable_tasks=True,
        cancel_running=True,  # except plain def bodies in threads: see the class docstring
        capture_stdio=True,
        timeouts=True,  # same exception
        prompt_tasks=True,  # through the prompt= completion function
        services=True,  # commands as process groups; async def bodies on the loop
    )

    def __init__(self, executor: Executor | Literal["threads", "processes"] | None = None, *,
                 max_workers: int | None = None, prompt: Completion | str | None = None,
                 service_grace: float = 5.0) -> None:
        super().__init__()
        self._prompt = _prompts.resolve(type(self).__name__, prompt)
        if isinstance(executor, str):
            if executor not in ("threads", "processes"):
                raise ValueError(f"{type(self).__name__}: executor={executor!r} is not one of "
                                 "'threads', 'processes' (or an executor instance)")
        elif executor is not None and not isinstance(executor, ThreadPoolExecutor
                                                     | ProcessPoolExecutor):
            raise TypeError(f"{type(self).__name__}: executor must be a ThreadPoolExecutor or a "
                            f"ProcessPoolExecutor, not {type(executor).__name__}")
        if max_workers is not None:
            if isinstance(executor, Executor):
                raise TypeError(f"{type(self).__name__}: max_workers= sizes a pool the backend "
                                f"creates; the {type(executor).__name__} given has its own")
            if isinstance(max_workers, bool) or not isinstance(max_workers, int) or \
                    max_workers < 1:
                raise ValueError(f"{type(self).__name__}: max_workers must be a whole number "
                                 f">= 1, not {max_workers!r}")
        if isinstance(service_grace, bool) or not isinstance(service_grace, int | float) or \
                service_grace < 0:
            raise ValueError(f"{type(self).__name__}: service_grace must be a number of seconds "
                             f">= 0, not {service_grace!r}")
        self._executor = executor
        self._max_workers = max_workers
        self.service_grace = float(service_grace)
        self._jobs: dict[str, Job] = {}
        self._services: dict[str, Service] = {}  # service tasks, until they end
        self._runner: Runner | None = None  # processes mode
        self._threads: ThreadRunner | None = None  # the other modes
        self.mode: Mode = (
            "loop" if executor is None
            else "processes" if executor == "processes" or isinstance(executor, ProcessPoolExecutor)
            else "threads")
        """``"loop"``, ``"threads"`` or ``"processes"``: where function bodies run."""

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        executor = self._executor
        if self.mode == "processes":
            from asyncflow_concurrent._processes import ProcessRunner, new_pool  # cloudpickle

            pool = executor if isinstance(executor, ProcessPoolExecutor) else new_pool(
                self._max_workers)
            self._runner = ProcessRunner(pool, loop)
        else:
            from asyncflow_concurrent._threads import ThreadRunner

            self._threads = ThreadRunner(
                executor if isinstance(executor, ThreadPoolExecutor) else ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix="asyncflow-concurrent"), loop,
                self._on_thread_update)
        log.info("concurrent execution backend started (mode %s)", self.mode)

    async def shutdown(self) -> None:
        runner = self._runner or self._threads
        if runner is not None:
            runner.closing = True
        if self._services:  # SIGTERM, then SIGKILL after a grace period, all at once
            await asyncio.gather(*(s.stop() for s in list(self._services.values())),
                                 return_exceptions=True)
        drivers = []
        for job in list(self._jobs.values()):
            if job.call is not None:
                job.call.stop()  # a plain body runs on: close() says so
                self._settle(job, TaskUpdate.cancelled(job.spec.uid))
                continue
            driver = job.driver
            if driver is None:
                continue
            drivers.append(driver)
            if not driver.cancelling():  # a second cancel would cut its clean-up short
                self._stop(job, driver)
        if drivers:
            await asyncio.gather(*drivers, return_exceptions=True)
        if runner is not None:
            await runner.close()
        log.info("concurrent execution backend shut down")

    # -- tasks -----------------------------------------------------------------------------

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        runner = self._runner or self._threads
        if runner is None or runner.closing:
            raise RuntimeError(f"{type(self).__name__} is not running")
        loop = asyncio.get_running_loop()
        new_driver = _driver_factory(loop)
        jobs = self._jobs
        report = self.report
        drive = self._drive
        threads = self._threads
        on_loop = self.mode == "loop"
        for spec in tasks:
            if spec.service is not None:
                self._start_service(spec)
                continue
            job = Job(spec, report)
            jobs[spec.uid] = job
            if threads is not None and spec.kind is TaskKind.FUNCTION and not (
                    on_loop and spec.is_coroutine):
                try:
                    threads.submit(job)
                except Exception as exc:  # the pool was shut down under us
                    self._settle(job, TaskUpdate.failed(spec.uid, exc))
            else:
                job.driver = new_driver(drive(job))

    async def cancel(self, uid: str) -> bool:
        service = self._services.get(uid)
        if service is not None:  # before it is ready, or ready (flow.stop_service): stop it
            await service.stop()
            return True
        job = self._jobs.get(uid)
        if job is None or job.finished:
            return False
        if job.call is not None:
            if not job.call.stop():
                self._warn_unstoppable(job)
                return False
            self._settle(job, TaskUpdate.cancelled(uid))
            return True
        if job.driver is None:
            return False
        if not job.interruptible:  # it will run to its end and report how it ended
            self._warn_unstoppable(job)
            return False
        self._stop(job, job.driver)
        return True

    def _start_service(self, spec: TaskSpec) -> None:
        if spec.kind is TaskKind.FUNCTION and not (spec.is_coroutine and self.mode == "loop"):
            self.report(TaskUpdate.failed(spec.uid, CapabilityError(
                f"service {spec.name!r} ({spec.uid}): the concurrent backend runs function "
                "services only as `async def` bodies on the event loop (executor=None); make "
                "it an executable service or an async def")))
            return
        if spec.kind is TaskKind.FUNCTION and spec.service is not None \
                and spec.service.line is not None:
            self.report(TaskUpdate.failed(spec.uid, ValueError(
                f"service {spec.name!r} ({spec.uid}): ready_line needs a command's output; a "
                "function service becomes ready on ready_port or ready_file")))
            return
        from asyncflow_concurrent._services import Service

        service = Service(spec, self.report, self.service_grace)
        self._services[spec.uid] = service
        service.task = asyncio.get_running_loop().create_task(service.run(),
                                                              name=f"service {spec.uid}")
        service.task.add_done_callback(lambda _: self._services.pop(spec.uid, None))

    @staticmethod
    def _warn_unstoppable(job: Job) -> None:
        log.warning("task %r (%s) cannot be stopped: its body runs in a thread until it returns "
                    "(Python threads cannot be interrupted)", job.spec.name, job.spec.uid)

    def _on_thread_update(self, job: Job, update: TaskUpdate) -> None:
        """A worker thread's report, on the engine's loop."""
        if job.finished:  # settled here already (cancelled, timed out, shut down)
            return
        if update.state is not TaskState.RUNNING:
            self._settle(job, update)
            return
        job.running = True
        self.report(update)
        timeout = job.spec.timeout
        if timeout is not None:  # counted from the body's start, not from the queue
            assert job.call is not None
            job.call.timer = asyncio.get_running_loop().call_later(timeout, self._expire, job)

    def _expire(self, job: Job) -> None:
        """A thread body's timeout: settle it now, and stop the body if that can be done."""
        if job.finished or job.call is None:
            return
        spec = job.spec
        stopped = job.call.stop()
        self._settle(job, TaskUpdate.failed(spec.uid, TaskTimeoutError(
            spec.name, spec.timeout or 0, "" if stopped else _THREAD_NOTE)))

    def _stop(self, job: Job, driver: asyncio.Task[None]) -> None:
        driver.cancel()
        # Cancelled before its first step, it never enters _drive: settle it here.
        coro = driver.get_coro()
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            self._settle(job, TaskUpdate.cancelled(job.spec.uid))

    async def _drive(self, job: Job) -> None:
        """Run one task and send its one terminal report."""
        # Few locals: this coroutine's frame is held for every task in flight.
        spec = job.spec
        try:
            if spec.timeout is not None:
                value = await self._execute_timed(job)
            elif spec.is_coroutine and self.mode == "loop" and spec.function is not None and \
                    spec.kind is TaskKind.FUNCTION:  # the common case, inlined
                value = spec.function(*spec.args, **spec.kwargs)  # the body's coroutine
                job.begin()
                value = await value
            else:
                value = await self._execute(job)
        except asyncio.CancelledError:  # the driver is ours: its end is the report
            self._settle(job, TaskUpdate.cancelled(spec.uid))
        except BaseException as exc:  # even KeyboardInterrupt: the task failed, not the loop
            self._settle(job, TaskUpdate.failed(spec.uid, exc))
        else:
            self._settle(job, TaskUpdate.done(spec.uid, value))

    async def _execute_timed(self, job: Job) -> Any:
        # Only tasks with a timeout pay for a deadline; it is armed when the body starts.
        spec = job.spec
        try:
            async with asyncio.timeout(None) as deadline:
                job.deadline = deadline
                return await self._execute(job)
        except TimeoutError:
            if not deadline.expired():  # the body's own TimeoutError
                raise
            raise TaskTimeoutError(spec.name, spec.timeout or 0,
                                   "" if job.interruptible else _THREAD_NOTE) from None

    def _settle(self, job: Job, update: TaskUpdate) -> None:
        job.finished = True
        if job.call is not None and job.call.timer is not None:
            job.call.timer.cancel()
        if self._jobs.get(job.spec.uid) is job:  # a retry may already own the uid
            del self._jobs[job.spec.uid]
        self.report(update)

    async def _execute(self, job: Job) -> Any:
        spec = job.spec
        if spec.kind is TaskKind.EXECUTABLE:
            job.begin(arm_deadline=False)  # run() enforces spec.timeout and kills the group
            return await executables.run(spec)
        if spec.kind is TaskKind.PROMPT:
            answer = _prompts.answer(type(self).__name__, self._prompt, spec)
            job.begin()
            return await answer
        assert spec.function is not None
        if spec.is_coroutine and self.mode == "loop":
            body = spec.function(*spec.args, **spec.kwargs)
            job.begin()
            return await body
        assert self._runner is not None
        return await self._runner.run(job)


def _driver_factory(loop: asyncio.AbstractEventLoop
                    ) -> Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]:
    """What makes a driver task: an eager one where Python has them and the loop has no task
    factory of its own (which decides otherwise), else a task that starts next iteration."""
    if sys.version_info >= (3, 12) and loop.get_task_factory() is None:
        return functools.partial(asyncio.Task, loop=loop, eager_start=True)
    return loop.create_task


LocalExecutionBackend = ConcurrentExecutionBackend
"""RADICAL AsyncFlow's other name for this backend (registered as ``local`` too)."""
