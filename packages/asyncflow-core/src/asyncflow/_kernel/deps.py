"""Finding the futures in a call's arguments, and replacing them with their values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.task import TaskFuture
from asyncflow.data import InputFile, OutputFile

if TYPE_CHECKING:
    from asyncflow.backend import ExecutionBackend

# Containers searched for futures. Only these exact types (not subclasses such as
# namedtuples or user classes) are rebuilt on substitution, so user objects pass unchanged.
# TaskFuture is final, so an exact type check finds every future too.
_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})  # a set: one hash per argument


def futures_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[TaskFuture[Any]]:
    """Every TaskFuture in ``args`` and ``kwargs``, nested in containers too (repeats included).

    It runs for every call, so the usual argument (neither a future nor a container) costs a
    type check and nothing else: no generator, no allocation but the result.
    """
    found: list[TaskFuture[Any]] = []
    for value in args:
        if type(value) is TaskFuture:
            found.append(value)
        elif type(value) in _CONTAINERS:
            _collect(value, found)
    if kwargs:
        for value in kwargs.values():
            if type(value) is TaskFuture:
                found.append(value)
            elif type(value) in _CONTAINERS:
                _collect(value, found)
    return found


def _collect(value: Any, found: list[TaskFuture[Any]]) -> None:
    kind = type(value)
    if kind is TaskFuture:
        found.append(value)
    elif kind in _CONTAINERS:
        if kind is dict:
            for key in value:
                if isinstance(key, TaskFuture):
                    raise TypeError("a task future cannot be a dict key (it is not a value yet)")
            value = value.values()
        for item in value:
            _collect(item, found)


_NESTED = frozenset({TaskFuture, *_CONTAINERS})  # the types resolve() has work to do for


def resolve(value: Any, backend: ExecutionBackend | None = None) -> Any:
    """``value`` with every TaskFuture replaced by its result (the futures are all done), or
    by the ref ``backend`` itself reported for that result (``TaskUpdate.ref``)."""
    kind = type(value)
    if kind is TaskFuture:
        ref = value._ref
        if ref is not None and ref[0] is backend:
            return ref[1]
        return value.result()
    # In the usual containers (a call's args and kwargs), an item that can hold no future is
    # kept without a call: a type check instead of a recursion per argument.
    if kind is tuple:
        return tuple([resolve(v, backend) if type(v) in _NESTED else v for v in value])
    if kind is dict:
        return {k: resolve(v, backend) if type(v) in _NESTED else v for k, v in value.items()}
    if kind is list:
        return [resolve(v, backend) if type(v) in _NESTED else v for v in value]
    if kind is set:
        return {resolve(v, backend) for v in value}
    if kind is frozenset:
        return frozenset([resolve(v, backend) for v in value])
    return value


NO_FILES: tuple[tuple[InputFile, ...], tuple[OutputFile, ...]] = ((), ())


def files_in(args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> tuple[tuple[InputFile, ...], tuple[OutputFile, ...]]:
    """The ``InputFile`` and ``OutputFile`` arguments of a call, nested in containers too, in
    order and each once (for backends that stage files)."""
    if not _may_hold_files(args) and not (kwargs and _may_hold_files(kwargs.values())):
        return NO_FILES  # the usual call: a type check per argument, nothing allocated
    inputs: list[InputFile] = []
    outputs: list[OutputFile] = []
    for value in args:
        _collect_files(value, inputs, outputs)
    for value in kwargs.values():
        _collect_files(value, inputs, outputs)
    return tuple(dict.fromkeys(inputs)), tuple(dict.fromkeys(outputs))


_MAY_HOLD_FILES = frozenset({InputFile, OutputFile, *_CONTAINERS})


def _may_hold_files(values: Iterable[Any]) -> bool:
    return not _MAY_HOLD_FILES.isdisjoint(map(type, values))


def _collect_files(value: Any, inputs: list[InputFile], outputs: list[OutputFile]) -> None:
    kind = type(value)
    if kind is InputFile:
        inputs.append(value)
    elif kind is OutputFile:
        outputs.append(value)
    elif kind in _CONTAINERS:
        for item in value.values() if kind is dict else value:
            _collect_files(item, inputs, outputs)
