"""An AsyncFlow backend running function tasks in the engine's own process: ``async def``
bodies on its event loop, plain ``def`` bodies in its default thread pool."""

import asyncio
from collections.abc import Sequence
from functools import partial

import asyncflow
from asyncflow import Capabilities, ExecutionBackend, TaskSpec, TaskUpdate
from asyncflow.registry import BackendRegistry


class InlineExecutionBackend(ExecutionBackend):
    name = "inline"
    capabilities = Capabilities(function_tasks=True)  # a running thread cannot be stopped

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # strong references, by task uid

    async def start(self) -> None:
        pass  # nothing to acquire: the engine's loop and its thread pool are enough

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for spec in tasks:
            task = asyncio.create_task(self._run(spec), name=spec.uid)
            self._tasks[spec.uid] = task
            task.add_done_callback(partial(self._forget, spec.uid))

    async def _run(self, spec: TaskSpec) -> None:
        assert spec.function is not None  # function tasks only, as the capabilities say
        self.report(TaskUpdate.running(spec.uid))
        try:
            if spec.is_coroutine:
                value = await spec.function(*spec.args, **spec.kwargs)
            else:
                value = await asyncio.to_thread(spec.function, *spec.args, **spec.kwargs)
        except Exception as exc:  # the task failed, not the backend
            self.report(TaskUpdate.failed(spec.uid, exc))
        else:
            self.report(TaskUpdate.done(spec.uid, value))

    def _forget(self, uid: str, task: asyncio.Task[None]) -> None:
        del self._tasks[uid]
        if task.cancelled():  # even one cancelled before its first line ran is reported
            self.report(TaskUpdate.cancelled(uid))

    async def cancel(self, uid: str) -> bool:
        task = self._tasks.get(uid)
        return task.cancel() if task is not None else False

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asyncflow.hookimpl
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    registry.add(InlineExecutionBackend)
