"""Retrying failed tasks: how often, how long to wait between attempts, and for which errors.

A task runs at most once unless it asks for retries::

    @flow.function_task(retries=3, retry_backoff=0.5, retry_on=(ConnectionError,))
    def fetch(url): ...

The engine waits ``backoff * factor ** (attempt - 1)`` seconds (capped at ``max_delay``, and
spread by ``jitter`` so that many failed tasks do not come back at the same instant) with a
timer on its event loop, then submits the task again. The body can ask which attempt it is
with :func:`current_attempt`; backends see it as ``TaskSpec.attempt``.
"""

from __future__ import annotations

import contextvars
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["RetryPolicy", "current_attempt"]

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]

_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("asyncflow_attempt", default=1)


def current_attempt() -> int:
    """The attempt of the task body that is running: 1 for the first run, 2 for the first
    retry, ... (1 outside a task, and in tasks that do not retry).
    """
    return _attempt.get()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how a failed task is run again.

    Args:
        retries: how many times a failed task runs again (0: it runs at most once).
        backoff: seconds to wait before the first retry; 0 retries at once.
        factor: each further retry waits ``factor`` times longer than the one before.
        max_delay: no wait is longer than this many seconds (before jitter).
        jitter: each wait is multiplied by a random number in ``[1 - jitter, 1 + jitter]``.
        retry_on: the exception types worth a retry, or a predicate ``error -> bool``;
            other errors fail the task at once.
    """

    retries: int = 0
    backoff: float = 0.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    retry_on: RetryOn = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) \
                or self.retries < 0:
            raise ValueError(f"retries= must be a whole number >= 0, not {self.retries!r}")
        for name in ("backoff", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"retry {name}= must be a number of seconds >= 0, not {value!r}")
        if not isinstance(self.factor, int | float) or self.factor < 1:
            raise ValueError(f"retry factor= must be a number >= 1, not {self.factor!r}")
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise ValueError(f"retry_jitter= must be between 0 and 1, not {self.jitter!r}")
        retry_on = self.retry_on
        if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
            object.__setattr__(self, "retry_on", (retry_on,))  # one type: the common spelling
        elif isinstance(retry_on, tuple):
            bad = [t for t in retry_on if not (isinstance(t, type)
                                               and issubclass(t, BaseException))]
            if bad or not retry_on:
                raise TypeError(f"retry_on= must be exception types or a predicate, not "
                                f"{retry_on!r}")
        elif not callable(retry_on):
            raise TypeError(f"retry_on= must be exception types or a predicate, not {retry_on!r}")

    def should_retry(self, attempt: int, error: BaseException | None) -> bool:
        """Whether a task that failed on ``attempt`` with ``error`` runs again."""
        if attempt > self.retries:
            return False
        if error is None:
            return True
        retry_on = self.retry_on
        if isinstance(retry_on, tuple):
            return isinstance(error, retry_on)
        return bool(retry_on(error))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after a failed ``attempt`` before the next one."""
        if self.backoff <= 0:
            return 0.0
        delay = min(self.backoff * self.factor ** (attempt - 1), self.max_delay)
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return delay


def with_attempt(fn: Callable[..., Any], attempt: int, is_coroutine: bool) -> Callable[..., Any]:
    """``fn`` such that :func:`current_attempt` returns ``attempt`` inside it.

    A :func:`functools.partial` of a module-level function, so it pickles wherever ``fn``
    does (process pools, remote workers) and ``inspect.iscoroutinefunction`` still sees an
    ``async def`` body as one.
    """
    return functools.partial(_run_async if is_coroutine else _run_sync, fn, attempt)


def _run_sync(fn: Callable[..., Any], attempt: int, /, *args: Any, **kwargs: Any) -> Any:
    token = _attempt.set(attempt)
    try:
        return fn(*args, **kwargs)
    finally:
        _attempt.reset(token)


async def _run_async(fn: Callable[..., Any], attempt: int, /, *args: Any, **kwargs: Any) -> Any:
    token = _attempt.set(attempt)
    try:
        return await fn(*args, **kwargs)
    finally:
        _attempt.reset(token)
