"""OpenTelemetry traces and metrics of AsyncFlow workflows.

Installed, the plugin reports every engine to OpenTelemetry's global providers when the
application configured the SDK; ``await flow.start_telemetry(span_processors=...,
metric_readers=...)`` gives one engine providers of its own, as RADICAL AsyncFlow's
``start_telemetry()`` does, and returns its :class:`Telemetry` (``subscribe()``,
``summary()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncflow_otel.__about__ import __version__
from asyncflow_otel._telemetry import Telemetry, TelemetryEvent, attach

if TYPE_CHECKING:
    from asyncflow import WorkflowEngine

__all__ = ["Telemetry", "TelemetryEvent", "__version__", "start_telemetry"]


async def start_telemetry(engine: WorkflowEngine, resource_poll_interval: float = 5.0,
                          checkpoint_interval: float | None = None,
                          checkpoint_path: str | Path | None = None,
                          span_processors: Sequence[Any] | None = None,
                          metric_readers: Sequence[Any] | None = None,
                          resource: Any | None = None) -> Telemetry:
    """Telemetry for ``engine`` (what ``await flow.start_telemetry(...)`` calls).

    ``span_processors`` and ``metric_readers`` (OpenTelemetry SDK objects) receive this
    engine's spans and metrics through providers of its own, with ``resource`` (default:
    ``service.name=asyncflow`` and the session id). With neither, the global providers are
    used. ``checkpoint_path`` receives :meth:`Telemetry.summary` as a JSON line when the
    engine stops and every ``checkpoint_interval`` seconds. ``resource_poll_interval`` is
    accepted for RADICAL AsyncFlow's signature: the process's CPU time and peak memory are
    observable gauges, read whenever a metric reader collects, so nothing polls.
    Tasks called before this have no spans. Calling it again returns the same object.
    """
    from asyncflow_otel import hooks

    off = hooks.off_reason(engine)
    if off is not None:
        raise RuntimeError(f"telemetry is turned off for engine {engine.uid}: {off}")
    if engine.closed:
        raise RuntimeError(f"start_telemetry(): engine {engine.uid} is shut down")
    current = hooks.sessions.get(engine)
    if current is not None:
        return current
    del resource_poll_interval  # see the docstring: gauges need no polling
    telemetry = attach(engine, span_processors, metric_readers, resource,
                       checkpoint_path=checkpoint_path, checkpoint_interval=checkpoint_interval)
    hooks.sessions[engine] = telemetry
    return telemetry
