"""``radical.asyncflow.backends``: the backend classes, looked up in the plugin registry.

``from radical.asyncflow.backends import NoopExecutionBackend`` works as in RADICAL AsyncFlow;
a class whose plugin is not installed raises ``ImportError`` with the ``pip install`` to run.
"""

from asyncflow import _BACKEND_CLASSES, ExecutionBackend, __getattr__  # noqa: F401

__all__ = ["ExecutionBackend"]


def __dir__() -> list[str]:
    return sorted({*__all__, *_BACKEND_CLASSES})
