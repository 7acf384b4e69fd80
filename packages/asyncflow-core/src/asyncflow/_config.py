"""Turning what the user asked for into backend instances.

``WorkflowEngine.create()`` calls :func:`resolve_backends`. With no backend given, the
configuration decides (see :mod:`asyncflow.config`); with nothing configured the default is
``concurrent`` when ``asyncflow-concurrent`` is installed. A backend named explicitly still
takes its options from the configuration, under the options given to ``create()``.
"""

from __future__ import annotations

import collections.abc as abc
import difflib
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from asyncflow import _plugins
from asyncflow.backend import ExecutionBackend
from asyncflow.config import DEFAULT_BACKEND, Settings, load, overridden_backend, sources_in
from asyncflow.errors import BackendOptionError, ConfigError, UnknownBackendError

__all__ = ["DEFAULT_BACKEND", "build", "resolve_backends", "validate"]

CREATE = "WorkflowEngine.create()"  # the source of options passed to create() in code

BackendArg = str | ExecutionBackend | Sequence[str | ExecutionBackend] | None

log = logging.getLogger("asyncflow.config")


def resolve_backends(backend: BackendArg, options: Mapping[str, Any], *,
                     settings: Callable[[], Settings] | None = None,
                     config: str | Path | None = None,
                     dry_run: bool = False) -> dict[str, ExecutionBackend]:
    """The engine's backends by routing name, the default first.

    Args:
        backend: what the user passed to ``create()``: ``None`` (the configuration decides),
            a name, an instance, or a list of them.
        options: keyword options for the first (default) backend, which must be a name.
        settings: the configuration, read when first called (``create()`` reads it once for
            everything it decides); by default, read from ``config``.
        config: a configuration file passed to ``create()``, the highest file source.
        dry_run: replace every backend by ``noop``.
    """
    items = _items(backend)
    read = settings or (lambda: load(config))
    configured: Settings | None = None
    if backend is None or config is not None or any(isinstance(i, str) for i in items):
        configured = read()
    if backend is None:
        assert configured is not None
        items = list(configured.backend_names(dry_run=dry_run))
        origin = f"backend (from {configured.source_of('backend')})"
    else:
        origin = f"{CREATE} argument backend={backend!r}"
        _note_ignored_override(backend)
    if options and not isinstance(items[0], str):
        raise TypeError(f"backend options {sorted(options)} were given with a backend "
                        f"instance {items[0]!r}; pass them to its constructor instead")

    registry = _plugins.registry()
    result: dict[str, ExecutionBackend] = {}
    for index, item in enumerate(items):
        if isinstance(item, ExecutionBackend):
            # dry_run executes nothing, even with an instance given: the instance is not started.
            name, instance = item.name, registry.get("noop")() if dry_run else item
        else:
            assert configured is not None
            kind = _kind(item, configured)
            try:
                name = registry.info(kind or item).name  # aliases route under the canonical name
            except UnknownBackendError as exc:
                raise UnknownBackendError(f"{origin}: {exc}") from None
            given = options if index == 0 else {}
            if dry_run:
                instance = registry.get("noop")()
            elif kind:
                instance = _build_named(item, name, configured, given)
            else:
                instance = _build_configured(name, item, configured, given)
            name = item if kind else name
        if name in result:
            raise ConfigError(f"{origin}: backend {name!r} is listed twice")
        result[name] = instance
    return result


def _items(backend: BackendArg) -> list[str | ExecutionBackend]:
    if backend is None:
        return []
    if isinstance(backend, str | ExecutionBackend):
        return [backend]
    items = list(backend)
    if not items:
        raise ConfigError(f"{CREATE}: backend=[] names no backend")
    for item in items:
        if not isinstance(item, str | ExecutionBackend):
            raise TypeError(f"{CREATE}: backend= takes names and ExecutionBackend instances, "
                            f"not {item!r}")
    return items


def _build_configured(name: str, given: str, settings: Settings,
                      options: Mapping[str, Any]) -> ExecutionBackend:
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in dict.fromkeys((name, given)):  # the canonical name, then the alias used
        merged.update(settings.backend_options(key))
        sources.update(sources_in(settings, key))
    merged.update(options)
    sources.update(dict.fromkeys(options, CREATE))
    return build(name, merged, sources)


def _kind(item: str, settings: Settings) -> str | None:
    """The backend a named entry (``[backends.<item>]`` with ``kind = "..."``) is one of."""
    kind = settings.backend_options(item).get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise ConfigError(f"{settings.source_of(f'backends.{item}.kind')}: backends.{item}.kind "
                          f"must be the name of an installed backend, not {kind!r}")
    return kind


def _build_named(route: str, name: str, settings: Settings,
                 options: Mapping[str, Any]) -> ExecutionBackend:
    # A named entry of a backend kind: its own table's options, routed under its own name.
    merged = {k: v for k, v in settings.backend_options(route).items() if k != "kind"}
    sources = {k: v for k, v in sources_in(settings, route).items() if k != "kind"}
    merged.update(options)
    sources.update(dict.fromkeys(options, CREATE))
    cls = validate(name, merged, sources)
    return cls(**merged, **{"name": route})  # every backend takes name= (ExecutionBackend)


def _note_ignored_override(backend: BackendArg) -> None:
    layer = overridden_backend()
    if layer is not None:
        log.warning("%s does not apply to this engine: the script passes backend=%r to "
                    "WorkflowEngine.create(), and an explicit backend wins", layer.source,
                    backend)


# -- building one backend ------------------------------------------------------------------


def build(name: str, options: Mapping[str, Any],
          sources: Mapping[str, str] | None = None) -> ExecutionBackend:
    """An instance of the backend registered as ``name``, with its keyword ``options``.

    ``sources`` says where each option came from; see :func:`validate`.
    """
    cls = validate(name, options, sources)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        configured = {k: s for k, s in (sources or {}).items() if s != CREATE and k in options}
        if not configured or isinstance(exc, BackendOptionError):
            raise
        # The constructor refused a value from a file: name the file and the key, which its
        # own message cannot (the keys its message mentions, or else every configured one).
        named = [k for k in configured if k in str(exc)] or list(configured)
        where = "; ".join(f"{configured[k]}: backends.{name}.{k} = {options[k]!r}"
                          for k in named)
        error = BackendOptionError if isinstance(exc, TypeError) else ConfigError
        raise error(f"{where}: {exc}") from None


def validate(name: str, options: Mapping[str, Any],
             sources: Mapping[str, str] | None = None) -> type[ExecutionBackend]:
    """The class of backend ``name``, once ``options`` are known to fit its constructor.

    Options from configuration (any source but :data:`CREATE`) are also checked against the
    constructor's type annotations, since TOML cannot say what Python meant.

    Raises:
        BackendOptionError: an option the constructor does not take, or of the wrong type
            (a ``TypeError`` and a ``ConfigError``); the message names the backend, the
            option, where it came from and the options the backend accepts.
    """
    sources = sources or {}
    cls = _plugins.registry().get(name)
    signature = inspect.signature(cls)
    accepted = accepted_options(cls)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in options if key not in accepted and not takes_any]
    if unknown:
        raise BackendOptionError(_unknown_message(name, cls, unknown, accepted, sources))
    hints = _type_hints(cls)
    for key, value in options.items():
        source = sources.get(key, CREATE)
        expected = hints.get(key)
        if source != CREATE and expected is not None and not _accepts(expected, value):
            raise BackendOptionError(
                f"{source}: backends.{name}.{key} must be {_type_name(expected)} (an option "
                f"of {cls.__qualname__}), not {type(value).__name__} {value!r}")
    try:
        signature.bind(**options)
    except TypeError as exc:  # e.g. a required option is missing
        raise BackendOptionError(f"backend {name!r} ({cls.__qualname__}): {exc}; it accepts: "
                                 f"{_listing(accepted)}") from None
    return cls


def accepted_options(cls: type[ExecutionBackend]) -> list[str]:
    """The keyword options a backend's constructor takes."""
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _unknown_message(name: str, cls: type, unknown: list[str], accepted: list[str],
                     sources: Mapping[str, str]) -> str:
    parts = []
    for key in unknown:
        part = repr(key)
        close = difflib.get_close_matches(key, accepted, n=1)
        if close:
            part += f" (did you mean {close[0]!r}?)"
        source = sources.get(key)
        if source and source != CREATE:
            part += f" from {source}"
        parts.append(part)
    noun = "option" if len(unknown) == 1 else "options"
    return (f"backend {name!r} ({cls.__qualname__}) does not accept the {noun} "
            f"{', '.join(parts)}; it accepts: {_listing(accepted)}")


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "no options"


# -- option types --------------------------------------------------------------------------


def _type_hints(cls: type) -> dict[str, Any]:
    """The constructor's parameter annotations, evaluated; ones that cannot be are left out."""
    init = cls.__init__  # type: ignore[misc]
    try:
        return typing.get_type_hints(init)
    except Exception:  # an annotation names something imported only for type checkers
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(init, "__globals__", {})
    for key, annotation in getattr(init, "__annotations__", {}).items():
        try:
            hints[key] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            continue
    return hints


_SEQUENCES = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Collection,
              abc.Iterable, abc.Set, abc.MutableSet)


def _accepts(expected: Any, value: Any) -> bool:
    """Whether a configuration value fits an annotation; unknown kinds of annotation fit."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if expected is Any or expected is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is typing.Annotated:
        return _accepts(args[0], value)
    if expected is None or expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(expected, type) and issubclass(expected, PurePath):
        return isinstance(value, str | PurePath)
    base = origin or expected
    if base in (dict, abc.Mapping, abc.MutableMapping):
        return isinstance(value, dict)
    if base in _SEQUENCES:
        if not isinstance(value, list):
            return False
        element = args[0] if args and (base is not tuple or args[-1] is Ellipsis) else Any
        return all(_accepts(element, item) for item in value)
    if origin is None and isinstance(expected, type):
        return isinstance(value, expected)
    return True  # a TypeVar, a protocol, a generic we do not know: the backend decides


def _type_name(expected: Any) -> str:
    if isinstance(expected, type) and typing.get_origin(expected) is None:
        return expected.__name__
    return re.sub(r"\b(typing|collections\.abc|pathlib|types)\.", "", repr(expected))
