"""A site given in configuration: a RADICAL-Pilot resource description, inline or in a file.

RADICAL-Pilot knows a resource by the ``resource_<site>.json`` files it ships and the ones a
user keeps under ``~/.radical``. A description given to the backend instead is checked here,
key by key, against RADICAL-Pilot's own schema (so that a misspelt key is an error naming it,
not a silently ignored line), and is then registered for the one session the backend opens
(see ``_environment.own_environment``).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LABEL", "check", "load"]

DEFAULT_LABEL = "asyncflow.site"  # the resource label of a site given without one


def load(site: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """The description ``site`` holds: itself, or the JSON object in the file it names."""
    if isinstance(site, Mapping):
        return dict(site)
    path = Path(site)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"radical backend: site file {path}: {exc.strerror}") from None
    try:
        description = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"radical backend: site file {path} is not JSON: {exc}") from None
    if not isinstance(description, dict):
        raise ValueError(f"radical backend: site file {path} must hold one JSON object (a "
                         "resource description), not a "
                         f"{type(description).__name__}")
    return description


def check(description: Mapping[str, Any], rp: Any, where: str = "site") -> None:
    """Refuse a key RADICAL-Pilot's resource configuration does not have, naming it.

    Args:
        description: the site's resource description.
        rp: the ``radical.pilot`` module.
        where: how the description is named in messages.
    """
    _known(description, frozenset(rp.ResourceConfig._schema), where)
    schemas = description.get("schemas", {})
    if not isinstance(schemas, Mapping):
        raise ValueError(f"radical backend: {where}.schemas must be a table of access "
                         f"schemas (e.g. {{local = {{job_manager_endpoint = ...}}}}), not "
                         f"{schemas!r}")
    access = frozenset(rp.resource_config.AccessSchema._schema)
    for name, schema in schemas.items():
        if not isinstance(schema, Mapping):
            raise ValueError(f"radical backend: {where}.schemas.{name} must be a table, not "
                             f"{schema!r}")
        _known(schema, access, f"{where}.schemas.{name}")
    default = description.get("default_schema")
    if default is not None and default not in schemas:
        raise ValueError(f"radical backend: {where}.default_schema = {default!r} is not one of "
                         f"its schemas ({', '.join(sorted(schemas)) or 'none given'})")


def _known(table: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    for key in table:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f"; its keys are {', '.join(sorted(keys))}"
            raise ValueError(f"radical backend: {where}: {key!r} is not a key of a "
                             f"RADICAL-Pilot resource configuration{hint}")
