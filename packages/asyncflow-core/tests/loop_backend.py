"""A small execution backend for the core's tests: it runs task bodies on the engine's loop.

``async def`` bodies run as asyncio tasks; plain ``def`` bodies run in the loop's default
thread pool (``run_in_executor``), so they never block the loop; commands run through
:func:`asyncflow.executables.run`. It records what the engine asks of it (every ``submit``
batch and every ``cancel``) so tests can assert on the contract itself.

It is a plain module (not a conftest) so that subprocess tests can import it too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import asyncflow
from asyncflow import Capabilities, ExecutionBackend, TaskKind, TaskSpec, TaskUpdate
from asyncflow.errors import TaskTimeoutError
from asyncflow.executables import run
from asyncflow.registry import BackendRegistry


class LoopBackend(ExecutionBackend):
    """Runs every task on (or, for plain ``def`` bodies, next to) the engine's event loop."""

    name = "loop"
    capabilities = Capabilities(function_tasks=True, executable_tasks=True, cancel_running=True,
                                capture_stdio=True, timeouts=True)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[TaskSpec]] = []
        self.cancelled: list[str] = []
        self.started_count = 0
        self.shutdown_count = 0
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def specs(self) -> list[TaskSpec]:
        """Every spec submitted so far, in order."""
        return [spec for batch in self.batches for spec in batch]

    async def start(self) -> None:
        self.started_count += 1

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        self.batches.append(list(tasks))
        for spec in tasks:
            task = asyncio.get_running_loop().create_task(self._run(spec), name=spec.uid)
            self._running[spec.uid] = task
            task.add_done_callback(functools.partial(self._forget, spec.uid))

    def _forget(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._running.get(uid) is task:
            del self._running[uid]

    async def _run(self, spec: TaskSpec) -> None:
        self.report(TaskUpdate.running(spec.uid))
        try:
            async with asyncio.timeout(spec.timeout):
                value = await self._body(spec)
        except asyncio.CancelledError:
            self.report(TaskUpdate.cancelled(spec.uid))
            raise
        except TimeoutError:
            assert spec.timeout is not None
            self.report(TaskUpdate.failed(spec.uid, TaskTimeoutError(spec.name, spec.timeout)))
        except Exception as exc:
            self.report(TaskUpdate.failed(spec.uid, exc))
        else:
            self.report(TaskUpdate.done(spec.uid, value))

    async def _body(self, spec: TaskSpec) -> Any:
        if spec.kind is TaskKind.EXECUTABLE:
            return await run(spec)
        assert spec.function is not None
        if spec.is_coroutine:
            return await spec.function(*spec.args, **spec.kwargs)
        call = functools.partial(spec.function, *spec.args, **spec.kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def cancel(self, uid: str) -> bool:
        self.cancelled.append(uid)
        task = self._running.get(uid)
        if task is None:
            return False
        task.cancel()
        return True

    async def shutdown(self) -> None:
        self.shutdown_count += 1
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class FunctionsOnlyBackend(LoopBackend):
    """The same backend, declaring fewer capabilities: no executables, no timeouts."""

    name = "functions_only"
    capabilities = Capabilities(function_tasks=True)


class LoopPlugin:
    """The plugin that registers these backends, as a third-party plugin would."""

    @asyncflow.hookimpl
    def asyncflow_register_backends(self, registry: BackendRegistry) -> None:
        registry.add(LoopBackend, aliases=("on_loop",))
        registry.add(FunctionsOnlyBackend)


def record_of(flow: asyncflow.WorkflowEngine, uid: str) -> asyncflow.TaskRecord:
    """The record of the unfinished task ``uid``, found through the public ``flow.tasks()``."""
    (record,) = [r for r in flow.tasks() if r.uid == uid]
    return record
