"""``ASYNCFLOW_TELEMETRY=off`` (or ``0``, ``false``, ``no``) for an engine constructed directly
(``WorkflowEngine(backends)``), which reads no configuration. For an engine that
``WorkflowEngine.create()`` made, the variable is the ``telemetry`` key's environment source
(:mod:`asyncflow.config`), under the command line and ``create()``'s own arguments."""

from __future__ import annotations

import os

ENV = "ASYNCFLOW_TELEMETRY"
_OFF = {"0", "off", "false", "no"}


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in _OFF
