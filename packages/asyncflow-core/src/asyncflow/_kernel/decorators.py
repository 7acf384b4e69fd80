"""The engine's decorators: ``function_task``, ``executable_task``, ``prompt_task`` and
``block``.

Each is usable bare (``@flow.function_task``) or with options
(``@flow.function_task(backend="dask", retries=2)``). Everything that can be checked is
checked once, at decoration; a call only registers the task.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from asyncflow._kernel.task import BLOCK, EXECUTABLE, FUNCTION, PROMPT, TaskFuture, TaskOptions
from asyncflow.retries import RetryPolicy

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine

P = ParamSpec("P")
T = TypeVar("T")

Body = Callable[P, Awaitable[T]] | Callable[P, T]


class Task:
    """A decorated function: calling it registers a task and returns its :class:`TaskFuture`."""

    def __init__(self, engine: WorkflowEngine, kind: str, fn: Callable[..., Any],
                 options: TaskOptions) -> None:
        self._engine = engine
        self._kind = kind
        self._fn = fn
        self._options = options
        self.__name__: str = getattr(fn, "__name__", type(fn).__name__)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskFuture[Any]:
        options = self._options
        if "task_description" in kwargs:
            options = self._merge(kwargs.pop("task_description"))
        workflow_id = None
        if "workflow_id" in kwargs:  # like task_description, for the engine, not the body
            workflow_id = _workflow_id(kwargs.pop("workflow_id"), self.__name__)
        return self._engine._register(self._kind, self._fn, self.__name__, options, args,
                                      kwargs, workflow_id)

    def _merge(self, description: Any) -> TaskOptions:
        if not isinstance(description, dict):
            raise TypeError(f"task {self.__name__!r}: task_description must be a dict, not "
                            f"{type(description).__name__}")
        _check_description(description, f"task {self.__name__!r}")
        merged = copy.deepcopy(self._options.description)  # never share nested lists
        merged.update(description)
        return replace(self._options, description=merged)

    def __repr__(self) -> str:
        return f"<{self._kind} task {self.__name__!r} of {self._engine.uid}>"


class DecoratorsMixin:
    """The decorators of :class:`~asyncflow.WorkflowEngine`."""

    @overload
    def function_task(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, TaskFuture[T]]: ...
    @overload
    def function_task(self, fn: Callable[P, T], /) -> Callable[P, TaskFuture[T]]: ...
    @overload
    def function_task(self, fn: None = None, /, **options: Any) -> Callable[
        [Callable[P, Any]], Callable[P, TaskFuture[Any]]]: ...

    def function_task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make ``fn`` a task whose body runs on a backend: ``async def`` or plain ``def``
        (a plain body never runs on the event loop).

        Options: ``backend="name"`` (route to that backend), ``timeout=s``,
        ``task_description={...}`` (backend-specific; a call's ``task_description=`` keyword
        is merged over it, the call wins), ``capture_stdio=`` (executables only),
        ``retries=N`` with ``retry_backoff=s``, ``retry_jitter=f`` and ``retry_on=`` (or
        ``retries=RetryPolicy(...)``; see :mod:`asyncflow.retries`), ``cache_key=`` (what
        identifies a call when a run is resumed; see the Observability docs),
        ``service=True`` (a long-running service whose future resolves when it is ready; see
        :mod:`asyncflow.services`).
        """
        return self._decorate(FUNCTION, fn, options)

    def executable_task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make ``fn`` an executable task: its body returns the command line to run, and the
        task's result is the command's stdout (or the stdout file's path with
        ``capture_stdio=True``). The body runs once the task's dependencies resolved.

        The command runs without a shell, split like a POSIX shell would
        (``task_description={"shell": True}`` runs it whole in a shell); ``cwd`` and ``env``
        come from ``task_description`` too. Options as for :meth:`function_task`.
        """
        return self._decorate(EXECUTABLE, fn, options)

    @overload
    def prompt_task(self, fn: Callable[P, Awaitable[str]], /) -> Callable[P, TaskFuture[Any]]: ...
    @overload
    def prompt_task(self, fn: Callable[P, str], /) -> Callable[P, TaskFuture[Any]]: ...
    @overload
    def prompt_task(self, fn: None = None, /, **options: Any) -> Callable[
        [Callable[P, Any]], Callable[P, TaskFuture[Any]]]: ...

    def prompt_task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make ``fn`` a prompt task: its body returns the prompt (a non-empty string), and
        the task's result is the answer of the backend it is routed to, which must declare
        the ``prompt_tasks`` capability. The body runs on the engine's event loop once the
        task's dependencies resolved, so a prompt can quote upstream results.

        ``task_description`` reaches the backend's completion function with the prompt (the
        model, the temperature...). Options as for :meth:`function_task`.
        """
        return self._decorate(PROMPT, fn, options)

    def block(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make ``fn`` (an ``async def``) a block: a composite workflow that runs on the
        engine's event loop, can depend on and be depended on by tasks and other blocks, and
        whose cancellation reaches every task called inside it.
        """
        return self._decorate(BLOCK, fn, options)

    def _decorate(self, kind: str, fn: Callable[..., Any] | None,
                  options: dict[str, Any]) -> Any:
        if fn is None:
            return lambda f: self._wrap(kind, f, options)
        return self._wrap(kind, fn, options)

    def _wrap(self, kind: str, fn: Callable[..., Any], given: dict[str, Any]) -> Task:
        if not callable(fn):
            raise TypeError(f"@{_DECORATOR[kind]} needs a function, got {fn!r}")
        name = getattr(fn, "__name__", repr(fn))
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # Its call would only make a generator: the body would never run.
            raise TypeError(f"@{_DECORATOR[kind]} on {name!r}: a generator function cannot be "
                            "a task body (it would return an unstarted generator); return a "
                            "list or other value instead of yielding")
        try:
            options = _options(kind, given)
        except (TypeError, ValueError) as exc:  # say which task the bad option is on
            raise type(exc)(f"@{_DECORATOR[kind]} on {name!r}: {exc}") from None
        is_coroutine = inspect.iscoroutinefunction(fn)
        if kind == BLOCK and not is_coroutine:
            raise TypeError(f"block {name!r} must be an `async def` function: blocks run on the "
                            "engine's event loop")
        default = _default_description(fn, name)
        if default:
            options = replace(options, description={**default, **options.description})
        options = replace(options, is_coroutine=is_coroutine)
        return Task(self, kind, fn, options)  # type: ignore[arg-type]


_DECORATOR = {FUNCTION: "function_task", EXECUTABLE: "executable_task", PROMPT: "prompt_task",
              BLOCK: "block"}
_ALLOWED = {"backend", "retries", "retry_backoff", "retry_jitter", "retry_on", "timeout",
            "capture_stdio", "task_description", "cache_key", "service"}


def _options(kind: str, options: dict[str, Any]) -> TaskOptions:
    unknown = set(options) - _ALLOWED
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; it accepts {sorted(_ALLOWED)}")
    backend = options.get("backend")
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend= must be a backend name (str), not {backend!r}")
    retry = _retry_policy(options)
    cache_key = options.get("cache_key")
    if cache_key is not None and not (isinstance(cache_key, str) or callable(cache_key)):
        raise TypeError(f"cache_key= must be a string or a function of the task's arguments, "
                        f"not {cache_key!r}")
    timeout = options.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValueError(f"timeout= must be a positive number of seconds, not {timeout!r}")
    service = options.get("service", False)
    if not isinstance(service, bool):
        raise TypeError(f"service= must be True or False, not {service!r}")
    if service and kind == BLOCK:
        raise TypeError("service=True is for function and executable tasks; a block runs on "
                        "the engine's loop and cannot be a service")
    if service and options.get("timeout") is not None:
        raise ValueError("a service runs until the engine shuts down, so timeout= does not "
                         "apply; task_description={'ready_timeout': s} bounds its start")
    description = options.get("task_description") or {}
    if not isinstance(description, dict):
        raise TypeError(f"task_description= must be a dict, not {type(description).__name__}")
    _check_description(description, "task_description=")
    return TaskOptions(backend=backend, timeout=timeout,
                       capture_stdio=bool(options.get("capture_stdio", False)),
                       description=description, retry=retry, cache_key=cache_key,
                       service=service)


def _workflow_id(value: Any, name: str) -> str | None:
    """A call's ``workflow_id=``: a non-empty string, or ``None`` for the current scope's."""
    if value is None or (isinstance(value, str) and value):
        return value
    raise TypeError(f"task {name!r}: workflow_id= must be a non-empty string (or None), not "
                    f"{value!r}")


def _check_description(description: dict[str, Any], where: str) -> None:
    """Check the keys the engine itself reads (the backend checks the rest)."""
    env = description.get("env")
    if env is not None and not isinstance(env, dict):
        raise TypeError(f"{where}: task_description['env'] must be a dict of variable names to "
                        f"values, not {type(env).__name__} {env!r}")
    cwd = description.get("cwd")
    if cwd is not None and not isinstance(cwd, str | os.PathLike):
        raise TypeError(f"{where}: task_description['cwd'] must be a directory path, not "
                        f"{type(cwd).__name__} {cwd!r}")
    shell = description.get("shell")
    if shell is not None and not isinstance(shell, bool):
        raise TypeError(f"{where}: task_description['shell'] must be true or false, not "
                        f"{shell!r}")


def _retry_policy(options: dict[str, Any]) -> RetryPolicy | None:
    """``retries=`` (a count or a :class:`RetryPolicy`) and the ``retry_*`` options as one
    policy, or ``None`` for a task that runs at most once.
    """
    retries = options.get("retries", 0)
    tuning = {key: options[f"retry_{key}"] for key in ("backoff", "jitter", "on")
              if f"retry_{key}" in options}
    if "on" in tuning:
        tuning["retry_on"] = tuning.pop("on")
    if isinstance(retries, RetryPolicy):
        if tuning:
            raise TypeError(f"retries= is a RetryPolicy; set {sorted(tuning)} on it instead of "
                            "as separate options")
        policy = retries
    else:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries= must be a whole number >= 0 or a RetryPolicy, not "
                             f"{retries!r}")
        policy = RetryPolicy(retries, **tuning)
    return policy if policy.retries else None


def _default_description(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        parameter = inspect.signature(fn).parameters.get("task_description")
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    if parameter is None or parameter.default is None \
            or parameter.default is inspect.Parameter.empty:
        return {}
    if not isinstance(parameter.default, dict):
        raise TypeError(f"task {name!r}: the default of its task_description parameter must be "
                        f"a dict, not {type(parameter.default).__name__}")
    return dict(parameter.default)
