"""A minimal on-loop backend, used only while ``asyncflow-concurrent`` is not installed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from asyncflow import ExecutionBackend, TaskSpec, TaskUpdate


class OnLoopBackend(ExecutionBackend):
    name = "concurrent"

    def __init__(self) -> None:
        super().__init__()
        self._running: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        pass

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for spec in tasks:
            task = asyncio.get_running_loop().create_task(self._run(spec))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, spec: TaskSpec) -> None:
        assert spec.function is not None
        try:
            value = await spec.function(*spec.args, **spec.kwargs)
        except Exception as exc:
            self.report(TaskUpdate.failed(spec.uid, exc))
        else:
            self.report(TaskUpdate.done(spec.uid, value))

    async def cancel(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        for task in self._running:
            task.cancel()
