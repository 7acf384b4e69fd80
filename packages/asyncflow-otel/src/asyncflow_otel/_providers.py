"""Which OpenTelemetry providers an engine's telemetry reports to."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider


def global_providers() -> tuple[TracerProvider, MeterProvider] | None:
    """The application's global providers, when it configured the SDK for traces or metrics
    (else ``None``: the API's defaults record nothing, and telemetry would only cost time)."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    if isinstance(tracer_provider, SdkTracerProvider) or isinstance(meter_provider,
                                                                    SdkMeterProvider):
        return tracer_provider, meter_provider
    return None


def own_providers(session_id: str, span_processors: Sequence[Any] | None,
                  metric_readers: Sequence[Any] | None,
                  resource: Any | None) -> tuple[TracerProvider, MeterProvider]:
    """SDK providers of one engine's own, feeding the processors and readers given."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    if resource is None:
        attributes = {"asyncflow.session_id": session_id}
        # The standard variables name the service when they do (Resource.create reads them,
        # but an attribute given here would win over them).
        if not os.environ.get("OTEL_SERVICE_NAME", "").strip() and "service.name=" not in \
                os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            attributes["service.name"] = "asyncflow"
        resource = Resource.create(attributes)
    tracer_provider = SdkTracerProvider(resource=resource)
    for processor in span_processors or ():
        tracer_provider.add_span_processor(processor)
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=list(metric_readers
                                                                             or ()))
    return tracer_provider, meter_provider
