"""Prompt tasks: the completion function the user names, and how one prompt is answered."""

from __future__ import annotations

import asyncio
import inspect
import pkgutil
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asyncflow.backend import TaskSpec
from asyncflow.errors import CapabilityError


class NoCompletionError(CapabilityError, NotImplementedError):
    """A prompt task reached a backend that was given no completion function. Also a
    ``NotImplementedError``, which RADICAL AsyncFlow's ``LocalExecutionBackend`` raised for
    every prompt, so ported code that catches it still does."""


Completion = Callable[[str, Mapping[str, Any]], Any]
"""``(prompt, description) -> answer``: ``async def`` or plain ``def`` (which runs in a
thread, never on the event loop), the answer or an awaitable of it."""


def resolve(owner: str, completion: Completion | str | None) -> Completion | None:
    """The callable of a ``prompt=`` option: given, or named ``"package.module:function"``
    (as a configuration file names it)."""
    if completion is None or callable(completion):
        return completion
    if not isinstance(completion, str):
        raise TypeError(f"{owner}: prompt= must be a callable or its 'module:function' name, "
                        f"not {type(completion).__name__}")
    try:
        found = pkgutil.resolve_name(completion)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{owner}: prompt={completion!r} cannot be imported: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not callable(found):
        raise TypeError(f"{owner}: prompt={completion!r} names a {type(found).__name__}, "
                        "not a function")
    return found  # type: ignore[no-any-return]


def answer(owner: str, completion: Completion | None, spec: TaskSpec) -> Awaitable[Any]:
    """What answers ``spec``'s prompt: a coroutine to await on the engine's loop."""
    if completion is None:
        raise NoCompletionError(
            f"prompt task {spec.name!r} ({spec.uid}): {owner} (LocalExecutionBackend) has no "
            "completion function to answer it; pass ConcurrentExecutionBackend(prompt="
            "complete), or set prompt = 'package.module:complete' under [backends.concurrent] "
            "in the configuration")
    prompt = spec.prompt or ""
    if _is_async(completion):
        return completion(prompt, spec.description)  # type: ignore[no-any-return]
    return asyncio.to_thread(_called, completion, prompt, spec.description)


def _is_async(fn: Completion) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004  # an object with async __call__


def _called(completion: Completion, prompt: str, description: Mapping[str, Any]) -> Any:
    value = completion(prompt, description)
    if inspect.isawaitable(value):  # its loop is the engine's, not this thread's
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError(f"the completion function {completion!r} is a plain def that returned "
                        f"a {type(value).__name__}; declare it `async def` instead")
    return value
