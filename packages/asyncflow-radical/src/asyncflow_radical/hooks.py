"""The plugin module named by the ``radical`` entry point of the ``asyncflow`` group."""

from __future__ import annotations

from asyncflow import hookimpl
from asyncflow.registry import BackendRegistry
from asyncflow_radical.backend import RadicalExecutionBackend


@hookimpl
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    registry.add(RadicalExecutionBackend, aliases=("radical_pilot",))
