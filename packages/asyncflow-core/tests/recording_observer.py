"""An observer plugin for the core tests (a module of its own, not the conftest, so test
modules import it by a name no other package's tests use)."""

from __future__ import annotations

import asyncflow
from asyncflow import TaskRecord, TaskState, WorkflowEngine


class Observer:
    """An observer plugin: records every hook call it receives."""

    def __init__(self) -> None:
        self.started: list[WorkflowEngine] = []
        self.stopped: list[tuple[WorkflowEngine, BaseException | None]] = []
        self.changes: list[tuple[str, TaskState, TaskState, int]] = []

    @asyncflow.hookimpl
    def asyncflow_engine_started(self, engine: WorkflowEngine) -> None:
        self.started.append(engine)

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, old: TaskState,
                                     new: TaskState) -> None:
        self.changes.append((task.uid, old, new, task.attempt))

    @asyncflow.hookimpl
    def asyncflow_engine_stopped(self, engine: WorkflowEngine,
                                 error: BaseException | None) -> None:
        self.stopped.append((engine, error))

    def states(self, uid: str) -> list[TaskState]:
        """The states ``uid`` went through, PENDING first."""
        news = [new for u, _, new, _ in self.changes if u == uid]
        return [TaskState.PENDING, *news]
