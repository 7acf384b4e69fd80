"""The plugin module named by the ``concurrent`` entry point of the ``asyncflow`` group."""

from __future__ import annotations

from asyncflow import hookimpl
from asyncflow.registry import BackendRegistry
from asyncflow_concurrent.backend import ConcurrentExecutionBackend


@hookimpl
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    # "local" is radical.asyncflow's name for the same backend (LocalExecutionBackend).
    registry.add(ConcurrentExecutionBackend, aliases=("local",))
