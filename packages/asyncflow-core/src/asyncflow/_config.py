"""Turning what the user asked for into backend instances.

``WorkflowEngine.create()`` calls :func:`resolve_backends`. With no backend given, the
configuration decides (see :mod:`asyncflow.config`); with nothing configured the default is
``concurrent`` when ``asyncflow-concurrent`` is installed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asyncflow import _plugins
from asyncflow.backend import ExecutionBackend
from asyncflow.errors import ConfigError

DEFAULT_BACKEND = "concurrent"

BackendArg = str | ExecutionBackend | Sequence[str | ExecutionBackend] | None


def resolve_backends(backend: BackendArg, options: Mapping[str, Any], *,
                     config: str | Path | None = None,
                     dry_run: bool = False) -> dict[str, ExecutionBackend]:
    """The engine's backends by routing name, the default first."""
    from asyncflow.config import load

    if backend is None:
        settings = load(config)
        names = settings.backend_names(dry_run=dry_run)
        items: list[str | ExecutionBackend] = list(names)
        per_name = {name: dict(settings.backend_options(name)) for name in names}
        if options:
            per_name[names[0]].update(options)
    else:
        if isinstance(backend, str | ExecutionBackend):
            items = [backend]
        else:
            items = list(backend)
        if not items:
            raise ConfigError("backend=[] names no backend")
        per_name = {}
        if options:
            if not isinstance(items[0], str):
                raise TypeError(f"backend options {sorted(options)} were given with a backend "
                                f"instance {items[0]!r}; pass them to its constructor instead")
            per_name[items[0]] = dict(options)

    result: dict[str, ExecutionBackend] = {}
    registry = _plugins.registry()
    for item in items:
        name = item if isinstance(item, str) else item.name
        if isinstance(item, str):
            name = registry.info(item).name  # aliases route under the canonical name
        if name in result:
            raise ConfigError(f"backend {name!r} is listed twice")
        if dry_run:
            result[name] = registry.get("noop")()
        elif isinstance(item, str):
            result[name] = build(item, per_name.get(item, {}))
        else:
            result[name] = item
    return result


def build(name: str, options: Mapping[str, Any]) -> ExecutionBackend:
    """An instance of the backend registered as ``name``, with its keyword ``options``."""
    cls = _plugins.registry().get(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        raise TypeError(f"backend {name!r} ({cls.__qualname__}) does not accept the options "
                        f"{sorted(options)}; it accepts: {', '.join(accepted_options(cls)) or 'none'}"
                        ) from None
    return cls(**options)


def accepted_options(cls: type[ExecutionBackend]) -> list[str]:
    """The keyword options a backend's constructor takes."""
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
