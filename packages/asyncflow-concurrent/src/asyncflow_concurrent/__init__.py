"""AsyncFlow's local backend: tasks run on the engine's event loop, in threads, or in worker
processes of this machine.

    from concurrent.futures import ThreadPoolExecutor
    from asyncflow_concurrent import ConcurrentExecutionBackend

    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor())

``LocalExecutionBackend`` is the same class under RADICAL AsyncFlow's other name for it.
"""

from asyncflow_concurrent.__about__ import __version__
from asyncflow_concurrent.backend import ConcurrentExecutionBackend, LocalExecutionBackend

__all__ = ["ConcurrentExecutionBackend", "LocalExecutionBackend", "__version__"]
