"""``telemetry`` in the configuration: the exporter it names, and the engine's telemetry.

An exporter is named as OpenTelemetry's own configuration names one, by an entry point of
the ``opentelemetry_traces_exporter`` group (``console`` from the SDK, ``otlp`` from
opentelemetry-exporter-otlp...), with the metric exporter of the same name when there is
one; or as ``"module:callable"``, a function (or class) returning a ``SpanExporter``.
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from asyncflow import ConfigError
from asyncflow_otel._providers import global_providers
from asyncflow_otel._telemetry import Telemetry, attach

if TYPE_CHECKING:
    from asyncflow import WorkflowEngine
    from asyncflow.config import Settings

log = logging.getLogger("asyncflow.otel")

TRACES = "opentelemetry_traces_exporter"
METRICS = "opentelemetry_metrics_exporter"
# "otlp" is the opentelemetry-exporter-otlp package's name for its gRPC exporters; the
# standard protocol variables choose HTTP instead, as they do for the exporters themselves.
_OTLP = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
OTLP_INSTALL = "pip install opentelemetry-exporter-otlp"


def from_settings(engine: WorkflowEngine, table: dict[str, Any],
                  settings: Settings) -> Telemetry:
    """The telemetry of ``engine`` that ``table`` (the ``[telemetry]`` keys) describes."""
    processors: list[Any] = []
    readers: list[Any] = []
    name = table.get("exporter")
    if name is not None:
        spans, metrics = exporters(name, settings.source_of("telemetry.exporter"))
        processors.append(BatchSpanProcessor(spans))  # exports from its own thread
        if metrics is not None:
            readers.append(PeriodicExportingMetricReader(metrics))
    elif global_providers() is None and "checkpoint_path" not in table:
        log.warning("telemetry is on (from %s), but it has no exporter and OpenTelemetry's "
                    "global providers are not configured: no span goes anywhere. Set "
                    "telemetry.exporter (\"console\", \"otlp\" or \"module:callable\").",
                    settings.source_of("telemetry"))
    path = table.get("checkpoint_path")
    return attach(engine, processors, readers,
                  checkpoint_path=Path(path).expanduser().absolute() if path else None,
                  checkpoint_interval=table.get("checkpoint_interval"), close=True)


def exporters(name: str, source: str) -> tuple[SpanExporter, MetricExporter | None]:
    """The span exporter ``name`` stands for, and the metric exporter of that name if any."""
    span_factory, metric_factory = factories(name, source)
    made = span_factory()
    if not isinstance(made, SpanExporter):
        raise ConfigError(f"{source}: telemetry.exporter = {name!r} returned "
                          f"{type(made).__name__}, not an OpenTelemetry SpanExporter")
    return made, metric_factory() if metric_factory is not None else None


def factories(name: str, source: str) -> tuple[Any, Any | None]:
    """What makes the exporters ``name`` stands for, found without making them (which is
    all ``asyncflow config`` checks)."""
    where = f"{source}: telemetry.exporter = {name!r}"
    if ":" in name:
        return _load(name, where), None
    if name == "otlp":
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
        name = _OTLP.get(protocol, name)
    found = {ep.name: ep for ep in metadata.entry_points(group=TRACES)}
    if name not in found:
        if name.startswith("otlp"):
            raise ImportError(f"{where} needs the OTLP exporter, which is not installed: "
                              f"{OTLP_INSTALL}", name="opentelemetry-exporter-otlp")
        raise ConfigError(f"{where} names no installed OpenTelemetry span exporter (installed: "
                          f"{', '.join(sorted(found))}); name one of those, \"otlp\", or a "
                          "callable as \"module:callable\"")
    metric = {ep.name: ep for ep in metadata.entry_points(group=METRICS)}.get(name)
    return found[name].load(), metric.load() if metric is not None else None


def _load(target: str, where: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name
                                     or module_name.startswith(f"{exc.name}.")):
            raise  # the module exists, and something it imports does not: its own bug
        raise ConfigError(f"{where}: there is no module {module_name!r} to import") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"{where}: module {module_name!r} has no callable {attribute!r}")
    return factory
