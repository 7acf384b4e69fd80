"""What ``WorkflowEngine.create()`` returns: a coroutine that is also an async context manager.

So both ``flow = await WorkflowEngine.create()`` and ``async with WorkflowEngine.create() as
flow:`` work, and so does everything that takes a coroutine (``asyncio.run()``,
``create_task()``, ``wait_for()``): the object passes the calls on to the coroutine
``create()`` made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine

P = ParamSpec("P")
E = TypeVar("E", bound="WorkflowEngine")


class Creation(Coroutine[Any, Any, E], Generic[E]):
    """Await it for the started engine, or enter it with ``async with`` to have the engine
    shut down on exit."""

    __slots__ = ("_coro", "_engine")

    def __init__(self, coro: Coroutine[Any, Any, E]) -> None:
        self._coro = coro
        self._engine: E | None = None

    def __await__(self) -> Generator[Any, None, E]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None) -> Any:
        if val is None and tb is None:  # the one-argument form asyncio uses
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> E:
        self._engine = await self._coro
        return self._engine

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._engine is not None
        await self._engine.shutdown()


def awaitable_or_context(create: Callable[P, Coroutine[Any, Any, E]]
                         ) -> Callable[P, Creation[E]]:
    """Make an ``async def`` factory return a :class:`Creation`."""
    @functools.wraps(create)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Creation[E]:
        return Creation(create(*args, **kwargs))

    return wrapper
