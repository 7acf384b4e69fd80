"""The plugin module named by the ``otel`` entry point of the ``asyncflow`` group.

Each hook passes the engine's events to that engine's :class:`~asyncflow_otel.Telemetry`, if
it has one: one dictionary lookup for an engine without. An engine gets one when it starts
if the application configured OpenTelemetry's global SDK providers, or later from
``await flow.start_telemetry()``. With ``ASYNCFLOW_TELEMETRY=off`` this module declares no
hooks at all, so the engine does not call it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncflow import hookimpl
from asyncflow_otel._switch import enabled

if TYPE_CHECKING:
    from asyncflow import TaskFuture, TaskRecord, TaskState, WorkflowEngine
    from asyncflow_otel._telemetry import Telemetry

# Each engine's telemetry, for as long as the engine lives.
sessions: weakref.WeakKeyDictionary[WorkflowEngine, Telemetry] = weakref.WeakKeyDictionary()

if enabled():
    @hookimpl
    def asyncflow_engine_started(engine: WorkflowEngine) -> None:
        from asyncflow_otel._providers import global_providers

        providers = global_providers()
        if providers is not None and engine not in sessions:
            from asyncflow_otel._telemetry import Telemetry

            sessions[engine] = Telemetry(engine, *providers)

    @hookimpl
    def asyncflow_task_created(engine: WorkflowEngine, task: TaskRecord,
                               dependencies: Sequence[TaskFuture[Any]]) -> None:
        telemetry = sessions.get(engine)
        if telemetry is not None:
            telemetry.task_created(task, dependencies)

    @hookimpl
    def asyncflow_task_state_changed(engine: WorkflowEngine, task: TaskRecord, old: TaskState,
                                     new: TaskState) -> None:
        telemetry = sessions.get(engine)
        if telemetry is not None:
            telemetry.task_changed(task, old, new)

    @hookimpl
    def asyncflow_service_exited(engine: WorkflowEngine, service: TaskFuture[Any],
                                 error: BaseException | None) -> None:
        telemetry = sessions.get(engine)
        if telemetry is not None:
            telemetry.service_exited(service, error)

    @hookimpl
    def asyncflow_engine_stopped(engine: WorkflowEngine, error: BaseException | None) -> None:
        telemetry = sessions.pop(engine, None)
        if telemetry is not None:
            telemetry.stopped(error)
