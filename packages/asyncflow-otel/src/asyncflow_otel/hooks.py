"""The plugin module named by the ``otel`` entry point of the ``asyncflow`` group.

Each hook passes the engine's events to that engine's :class:`~asyncflow_otel.Telemetry`, if
it has one: one dictionary lookup for an engine without. An engine gets one when it starts:
from ``telemetry`` in its configuration (``asyncflow_engine_configured``), else if the
application configured OpenTelemetry's global SDK providers; or later from ``await
flow.start_telemetry()``. ``telemetry = false`` (``ASYNCFLOW_TELEMETRY=off`` is that value
from the environment) leaves the engine without one, whatever the global providers, and
out of this module's hooks altogether.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncflow import hookimpl
from asyncflow_otel._switch import enabled

if TYPE_CHECKING:
    from asyncflow import TaskFuture, TaskRecord, TaskState, WorkflowEngine
    from asyncflow.config import Settings
    from asyncflow_otel._telemetry import Telemetry

# Each engine's telemetry, for as long as the engine lives.
sessions: weakref.WeakKeyDictionary[WorkflowEngine, Telemetry] = weakref.WeakKeyDictionary()
# Engines whose configuration turned telemetry off, and where that came from.
turned_off: weakref.WeakKeyDictionary[WorkflowEngine, str] = weakref.WeakKeyDictionary()


def off_reason(engine: WorkflowEngine) -> str | None:
    """Why ``engine`` has no telemetry on purpose, or ``None`` when it may have some."""
    source = turned_off.get(engine)
    if source is not None:
        return f"telemetry = false, from {source}"
    if engine.settings is None and not enabled():  # constructed directly: no configuration
        return "ASYNCFLOW_TELEMETRY=off in the environment"
    return None


@hookimpl
def asyncflow_engine_configured(engine: WorkflowEngine, settings: Settings) -> bool | None:
    value = settings.telemetry
    if value is False:  # the engine then calls none of these hooks: off costs nothing
        turned_off[engine] = settings.source_of("telemetry")
        return False
    if isinstance(value, dict):
        from asyncflow_otel._configured import from_settings

        sessions[engine] = from_settings(engine, value, settings)
    return None


@hookimpl
def asyncflow_check_settings(settings: Settings) -> None:
    value = settings.telemetry
    if isinstance(value, dict) and value.get("exporter") is not None:
        from asyncflow_otel._configured import factories

        factories(value["exporter"], settings.source_of("telemetry.exporter"))


@hookimpl
def asyncflow_engine_started(engine: WorkflowEngine) -> None:
    if engine in sessions or off_reason(engine) is not None:
        return
    from asyncflow_otel._providers import global_providers

    providers = global_providers()
    if providers is not None:
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
