"""``WorkflowEngine.start_telemetry()``: the door to the ``asyncflow-otel`` plugin.

The kernel knows nothing of OpenTelemetry; it hands the call to the plugin, which observes
the engine through its hooks like any other plugin.
"""

from __future__ import annotations

import importlib
from typing import Any


class TelemetryMixin:
    """RADICAL AsyncFlow's ``start_telemetry()`` on :class:`~asyncflow.WorkflowEngine`."""

    async def start_telemetry(self, *args: Any, **kwargs: Any) -> Any:
        """Trace and measure this engine with OpenTelemetry, and return the telemetry object
        (``subscribe()``, ``summary()``): ``await flow.start_telemetry(span_processors=[...],
        metric_readers=[...])``. Needs ``asyncflow-otel`` (``pip install asyncflow-otel``);
        see :func:`asyncflow_otel.start_telemetry` for the arguments.
        """
        try:
            plugin = importlib.import_module("asyncflow_otel")
        except ModuleNotFoundError as exc:
            if exc.name != "asyncflow_otel":
                raise
            raise ImportError("start_telemetry() needs the asyncflow-otel plugin, which is not "
                              "installed: pip install asyncflow-otel",
                              name="asyncflow-otel") from None
        return await plugin.start_telemetry(self, *args, **kwargs)
