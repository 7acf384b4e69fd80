"""Hook specifications: what a plugin can implement.

A plugin is a module (usually ``<package>/hooks.py``) named by an entry point in the
``asyncflow`` group, whose functions are marked with :data:`asyncflow.hookimpl`::

    [project.entry-points.asyncflow]
    dask = "asyncflow_dask.hooks"

Implementations may accept any subset of a hook's arguments. Observer hooks are synchronous
and fire-and-forget: they cannot stall or break the engine. A hook implementation that is
``async def`` or a wrapper (``wrapper=True``, ``hookwrapper=True``) is refused when its plugin
loads, naming the plugin: the engine calls observers directly and could honour neither. An
observer that raises is logged once, with its plugin's name, and the engine it belongs to
stops calling that plugin. Control over tasks (submit, cancel, shutdown) never goes through
hooks; it is the :class:`asyncflow.ExecutionBackend` contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from asyncflow._kernel.engine import WorkflowEngine
    from asyncflow._kernel.task import TaskFuture, TaskRecord
    from asyncflow.backend import TaskState
    from asyncflow.config import Settings
    from asyncflow.registry import BackendRegistry

__all__ = [
    "asyncflow_check_settings",
    "asyncflow_engine_configured",
    "asyncflow_engine_started",
    "asyncflow_engine_stopped",
    "asyncflow_register_backends",
    "asyncflow_service_exited",
    "asyncflow_task_created",
    "asyncflow_task_state_changed",
    "hookimpl",
]

_spec = pluggy.HookspecMarker("asyncflow")

hookimpl = pluggy.HookimplMarker("asyncflow")
"""Marker for hook implementations in plugins: ``@asyncflow.hookimpl``. It lives beside the
specifications so that a plugin (the built-in ones too) needs nothing above this module."""

# -- registration -------------------------------------------------------------------------


@_spec(historic=True)
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    """Register backend classes: ``registry.add(MyBackend, aliases=("mine",))``.

    Called once per plugin when the registry is first needed, and at once for a plugin
    registered later (the hook is historic). The built-in ``noop`` backend registers here too.

    :param registry: the process-wide :class:`~asyncflow.registry.BackendRegistry`.
    """


# -- configuration ------------------------------------------------------------------------


@_spec
def asyncflow_engine_configured(engine: WorkflowEngine, settings: Settings) -> bool | None:
    """Called when an engine made by ``WorkflowEngine.create()`` (so every engine of
    ``asyncflow run``) starts, before its backends do, with the configuration it was made
    from; not for an engine constructed directly. A plugin reads the keys it owns here
    (asyncflow-otel: ``telemetry``; see ``asyncflow.config.PLUGIN_KEYS``).

    Unlike the observer hooks, an implementation that raises stops the start: ``create()``
    raises it (a :class:`~asyncflow.ConfigError` for a value the plugin cannot use), and
    the observers hear ``asyncflow_engine_stopped`` with it. One that returns ``False``
    sits this engine out: the engine calls none of that plugin's hooks again (what
    ``telemetry = false`` does to asyncflow-otel), so it costs nothing per task.

    :param engine: the engine, not started yet.
    :param settings: its :class:`~asyncflow.config.Settings` (values and their sources).
    :return: ``False`` to observe nothing of this engine; anything else is ignored.
    """


@_spec
def asyncflow_check_settings(settings: Settings) -> None:
    """Called by ``asyncflow config`` to check the keys a plugin owns as
    :func:`asyncflow_engine_configured` would, without an engine and without acquiring
    anything: raise :class:`~asyncflow.ConfigError` (or ``ImportError`` for a missing
    package) for a value that ``create()`` would refuse. Every plugin is called; each
    error is one problem in the report.

    :param settings: the effective :class:`~asyncflow.config.Settings`.
    """


# -- observation --------------------------------------------------------------------------


@_spec
def asyncflow_engine_started(engine: WorkflowEngine) -> None:
    """Called when an engine has started its backends and accepts tasks.

    :param engine: the engine.
    """


@_spec
def asyncflow_task_created(
    engine: WorkflowEngine, task: TaskRecord, dependencies: Sequence[TaskFuture[Any]]
) -> None:
    """Called on the event loop when a task or block is called, before it can start.

    The task is PENDING; its first :func:`asyncflow_task_state_changed` comes later (or at
    once, for a task whose dependency already failed).

    :param engine: the engine the task belongs to.
    :param task: the task's record (``uid``, ``name``, ``kind``, ``block``,
        ``workflow_id``, ``options``...).
    :param dependencies: the futures found in its arguments (repeats included), each with
        ``uid`` and ``name``.
    """


@_spec
def asyncflow_task_state_changed(
    engine: WorkflowEngine, task: TaskRecord, old: TaskState, new: TaskState
) -> None:
    """Called on the event loop each time a task or block changes state.

    The transitions that occur, and no others (the engine checks each one):

    - PENDING -> RUNNING, when a backend reports that the task started (a block: when its
      body starts);
    - PENDING -> DONE | FAILED | CANCELLED, for a task that finishes without being seen
      running (a fast backend, a failed dependency, a cancel, a resumed result);
    - RUNNING -> DONE | FAILED | CANCELLED;
    - RUNNING -> PENDING, when a failed attempt is retried (``task.attempt`` increased);
      PENDING -> PENDING when an attempt failed before it was seen running.

    DONE, FAILED and CANCELLED are final.

    :param engine: the engine the task belongs to.
    :param task: the task's record (``uid``, ``name``, ``kind``, ``backend``, ``attempt``...).
    :param old: the previous state.
    :param new: the new state.
    """


@_spec
def asyncflow_service_exited(engine: WorkflowEngine, service: TaskFuture[Any],
                             error: BaseException | None) -> None:
    """Called on the event loop when a service task that was ready (its future DONE) ends on
    its own while the engine runs; not for the services the shutdown stops.

    :param engine: the engine the service belongs to.
    :param service: the service task's future (``uid``, ``name``, its endpoint as result).
    :param error: why it ended, usually :class:`~asyncflow.ServiceExitedError` with the exit
        code and the tail of its output.
    """


@_spec
def asyncflow_engine_stopped(engine: WorkflowEngine, error: BaseException | None) -> None:
    """Called once when an engine has shut down and released its backends, or when its
    start failed (``error`` is then what failed; ``asyncflow_engine_started`` never fired).

    :param engine: the engine.
    :param error: what made it stop (a signal's ``KeyboardInterrupt``...), or ``None``.
    """
