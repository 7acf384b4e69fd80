"""AsyncFlow's Dask backend: tasks run on the workers of a Dask distributed cluster.

    from asyncflow import WorkflowEngine

    flow = await WorkflowEngine.create(backend="dask", n_workers=4)
    flow = await WorkflowEngine.create(backend="dask", address="tcp://10.0.0.5:8786")

Importing this package is cheap: ``distributed`` is imported when the backend starts.
"""

from asyncflow_dask.__about__ import __version__
from asyncflow_dask.backend import DaskExecutionBackend

__all__ = ["DaskExecutionBackend", "__version__"]
