"""AsyncFlow: an asyncio workflow engine with execution backends as plugins.

Tasks are ``async def`` (or plain ``def``) functions decorated by an engine; calling one
returns a future at once; passing futures to other tasks makes dependencies::

    flow = await WorkflowEngine.create()

    @flow.function_task
    async def double(x):
        return 2 * x

    assert await double(double(1)) == 4
    await flow.shutdown()

Backend classes (``ConcurrentExecutionBackend``, ``DaskExecutionBackend``...) come from
plugins and are looked up lazily, so ``import asyncflow`` imports no backend.
"""

from __future__ import annotations

from typing import Any

from asyncflow.__about__ import __version__
from asyncflow._kernel.engine import WorkflowEngine
from asyncflow._kernel.task import TaskFuture, TaskRecord
from asyncflow._plugins import hookimpl, plugin_manager, register, registry
from asyncflow.backend import (
    Capabilities,
    ExecutionBackend,
    TaskKind,
    TaskSpec,
    TaskState,
    TaskUpdate,
)
from asyncflow.data import InputFile, OutputFile
from asyncflow.errors import (
    AsyncFlowError,
    BackendConflictError,
    BackendError,
    BackendOptionError,
    CapabilityError,
    ConfigError,
    DependencyFailureError,
    EngineClosedError,
    EngineInternalError,
    ExecutableFailedError,
    PluginLoadError,
    RemoteError,
    RemoteTraceback,
    RunInUseError,
    ServiceExitedError,
    ServiceNotReadyError,
    TaskExitError,
    TaskTimeoutError,
    UnknownBackendError,
    WorkerLostError,
)
from asyncflow.executables import CommandOutput
from asyncflow.retries import RetryPolicy, current_attempt
from asyncflow.services import ServiceEndpoint

__all__ = [
    "AsyncFlowError",
    "BackendConflictError",
    "BackendError",
    "BackendOptionError",
    "Capabilities",
    "CapabilityError",
    "CommandOutput",
    "ConfigError",
    "DependencyFailureError",
    "EngineClosedError",
    "EngineInternalError",
    "ExecutableFailedError",
    "ExecutionBackend",
    "InputFile",
    "OutputFile",
    "PluginLoadError",
    "RemoteError",
    "RemoteTraceback",
    "RetryPolicy",
    "RunInUseError",
    "ServiceEndpoint",
    "ServiceExitedError",
    "ServiceNotReadyError",
    "TaskExitError",
    "TaskFuture",
    "TaskKind",
    "TaskRecord",
    "TaskSpec",
    "TaskState",
    "TaskTimeoutError",
    "TaskUpdate",
    "UnknownBackendError",
    "WorkerLostError",
    "WorkflowEngine",
    "__version__",
    "current_attempt",
    "hookimpl",
    "plugin_manager",
    "register",
    "registry",
]

# Backend classes provided by plugins: attribute name -> (backend name, distribution).
# They stay out of __all__ so that `import *` does not import every backend.
_BACKEND_CLASSES = {
    "ConcurrentExecutionBackend": ("concurrent", "asyncflow-concurrent"),
    "LocalExecutionBackend": ("concurrent", "asyncflow-concurrent"),
    "DaskExecutionBackend": ("dask", "asyncflow-dask"),
    "RadicalExecutionBackend": ("radical", "asyncflow-radical"),
    "NoopExecutionBackend": ("noop", "asyncflow-core"),
}


def __getattr__(attr: str) -> Any:
    try:
        name, distribution = _BACKEND_CLASSES[attr]
    except KeyError:
        raise AttributeError(f"module 'asyncflow' has no attribute {attr!r}") from None
    from asyncflow.errors import UnknownBackendError

    try:
        return registry().get(name)
    except UnknownBackendError:
        raise ImportError(f"{attr} is provided by {distribution}, which is not installed: "
                          f"pip install {distribution}", name=distribution) from None


def __dir__() -> list[str]:
    return sorted({*__all__, *_BACKEND_CLASSES})
