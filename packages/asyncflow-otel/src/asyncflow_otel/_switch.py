"""Whether the plugin is on: ``ASYNCFLOW_TELEMETRY=off`` (or ``0``, ``false``, ``no``) turns it
off for the process."""

from __future__ import annotations

import os

ENV = "ASYNCFLOW_TELEMETRY"
_OFF = {"0", "off", "false", "no"}


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in _OFF
