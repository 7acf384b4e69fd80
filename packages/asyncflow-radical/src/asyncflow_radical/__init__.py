"""AsyncFlow's HPC backend: tasks run inside a RADICAL-Pilot pilot job.

    from asyncflow import WorkflowEngine

    flow = await WorkflowEngine.create(backend="radical", resource="local.localhost", cores=4)

``RadicalExecutionBackend`` is registered as ``radical`` (and ``radical_pilot``); RADICAL-Pilot
is imported only when the backend starts.
"""

from asyncflow_radical.__about__ import __version__
from asyncflow_radical.backend import RadicalExecutionBackend

__all__ = ["RadicalExecutionBackend", "__version__"]
