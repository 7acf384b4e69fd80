"""Workflow scopes: which workflow a task belongs to, carried by a context variable.

Each engine has its own variable, so a scope of one engine never marks another engine's
tasks. A context variable follows the code that runs inside the scope into the tasks it
starts (``asyncio.gather``, ``create_task`` copy the context) and nowhere else.
"""

from __future__ import annotations

import contextvars
import os
from types import TracebackType

__all__ = ["WorkflowScope", "new_workflow_id"]


def new_workflow_id() -> str:
    """A fresh id in RADICAL AsyncFlow's format, ``wf-`` and 8 hex digits."""
    return f"wf-{os.urandom(4).hex()}"


class WorkflowScope:
    """What ``flow.workflow_scope()`` returns. Inside ``async with`` (or ``with``) it, every
    task and block called carries :attr:`id` as its ``workflow_id``; entering gives the id.
    """

    __slots__ = ("_tokens", "_var", "id")

    def __init__(self, var: contextvars.ContextVar[str | None], workflow_id: str) -> None:
        self._var = var
        self._tokens: list[contextvars.Token[str | None]] = []  # a scope may be re-entered
        self.id = workflow_id

    def __enter__(self) -> str:
        self._tokens.append(self._var.set(self.id))
        return self.id

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._var.reset(self._tokens.pop())

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<WorkflowScope {self.id!r}>"
