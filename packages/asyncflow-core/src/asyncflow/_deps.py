"""Finding the futures in a call's arguments, and replacing them with their values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from asyncflow._task import TaskFuture

if TYPE_CHECKING:
    from asyncflow.backend import ExecutionBackend

# Containers searched for futures. Only these exact types (not subclasses such as
# namedtuples or user classes) are rebuilt on substitution, so user objects pass unchanged.
_CONTAINERS = (list, tuple, set, frozenset, dict)


def futures_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[TaskFuture[Any]]:
    """Every TaskFuture in ``args`` and ``kwargs``, nested in containers too (repeats included)."""
    for value in args:
        yield from _walk(value)
    for value in kwargs.values():
        yield from _walk(value)


def _walk(value: Any) -> Iterator[TaskFuture[Any]]:
    kind = type(value)
    if kind is TaskFuture or isinstance(value, TaskFuture):
        yield value
    elif kind in _CONTAINERS:
        items = value.values() if kind is dict else value
        for item in items:
            yield from _walk(item)
        if kind is dict:
            for key in value:
                if isinstance(key, TaskFuture):
                    raise TypeError("a task future cannot be a dict key (it is not a value yet)")


def resolve(value: Any, backend: ExecutionBackend | None = None) -> Any:
    """``value`` with every TaskFuture replaced by its result (the futures are all done), or
    by the ref ``backend`` itself reported for that result (``TaskUpdate.ref``)."""
    kind = type(value)
    if kind is TaskFuture or isinstance(value, TaskFuture):
        ref = value._ref
        if ref is not None and ref[0] is backend:
            return ref[1]
        return value.result()
    if kind is list:
        return [resolve(v, backend) for v in value]
    if kind is tuple:
        return tuple(resolve(v, backend) for v in value)
    if kind is dict:
        return {k: resolve(v, backend) for k, v in value.items()}
    if kind is set:
        return {resolve(v, backend) for v in value}
    if kind is frozenset:
        return frozenset(resolve(v, backend) for v in value)
    return value
