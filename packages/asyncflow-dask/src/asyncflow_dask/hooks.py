"""The plugin module named by the ``dask`` entry point of the ``asyncflow`` group."""

from __future__ import annotations

from asyncflow import hookimpl
from asyncflow.registry import BackendRegistry
from asyncflow_dask.backend import DaskExecutionBackend  # cheap: distributed loads in start()


@hookimpl
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    registry.add(DaskExecutionBackend, aliases=("dask_distributed",))
