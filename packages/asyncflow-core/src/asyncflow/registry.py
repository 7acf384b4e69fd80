"""The registry of backend classes, filled by the ``asyncflow_register_backends`` hook."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from asyncflow.backend import ExecutionBackend
from asyncflow.errors import BackendConflictError, UnknownBackendError

__all__ = ["BackendInfo", "BackendRegistry"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# First-party backends that are separate distributions, for install hints.
KNOWN_DISTRIBUTIONS = {
    "concurrent": "asyncflow-concurrent",
    "dask": "asyncflow-dask",
    "radical": "asyncflow-radical",
}


@dataclass
class BackendInfo:
    """One registered backend: its class (or a lazy ``"module:Class"`` path) and provenance."""

    name: str
    target: type[ExecutionBackend] | str
    aliases: tuple[str, ...] = ()
    distribution: str | None = None
    version: str | None = None
    error: BaseException | None = field(default=None, repr=False)

    def load(self) -> type[ExecutionBackend]:
        """The backend class, importing it if it was registered as a ``"module:Class"`` path.

        Raises the error that made this entry unusable (a plugin that failed to import, two
        distributions claiming the name), if there is one.
        """
        if self.error is not None:
            raise self.error.with_traceback(None)
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            cls: type[ExecutionBackend] = getattr(importlib.import_module(module), attr)
            _check_class(cls, self.name)
            self.target = cls
            return cls
        return self.target


class BackendRegistry:
    """Backend classes by name and alias. Plugins call :meth:`add`; users call :meth:`get`."""

    def __init__(self) -> None:
        self._by_name: dict[str, BackendInfo] = {}
        self._aliases: dict[str, str] = {}
        self._current: tuple[str | None, str | None] = (None, None)  # plugin being loaded

    def add(
        self,
        backend: type[ExecutionBackend] | str,
        *,
        name: str | None = None,
        aliases: Iterable[str] = (),
    ) -> None:
        """Register a backend class, or a ``"module:Class"`` path imported on first use
        (then ``name`` is required, since the class is not imported to read it).
        """
        if isinstance(backend, str):
            if name is None:
                raise TypeError(f"registry.add({backend!r}) needs name= for a lazy import path")
        else:
            _check_class(backend, name)
            name = name or backend.name
        if not _NAME.match(name):
            raise ValueError(f"backend name {name!r} must be lower snake case ([a-z][a-z0-9_]*)")
        dist, version = self._current
        info = BackendInfo(name, backend, tuple(aliases), dist, version)
        for key in (name, *info.aliases):
            self._claim(key, info)
        if self._by_name.get(name, info).error is None:  # not refused by _claim
            self._by_name[name] = info
        for alias in info.aliases:
            self._aliases.setdefault(alias, name)

    def _claim(self, key: str, info: BackendInfo) -> None:
        owner = self._by_name.get(self._aliases.get(key, key))
        if owner is None or owner.target == info.target:
            return
        error = conflict(key, _provenance(owner), _provenance(info))
        if info.distribution is None:  # a direct call: its caller can fix it at once
            raise error
        # While plugins load, a conflict poisons only the contested name: the other backends
        # of both distributions stay usable, and using this name says why it cannot be.
        self._refuse(key, error)

    def _refuse(self, key: str, error: BaseException, target: str | None = None,
                distribution: str | None = None, version: str | None = None) -> None:
        """Make ``key`` unusable: getting its class raises ``error``."""
        canonical = self._aliases.get(key, key)
        owner = self._by_name.get(canonical)
        shown: type[ExecutionBackend] | str = target or (owner.target if owner else key)
        self._by_name[canonical] = BackendInfo(canonical, shown, (), distribution, version,
                                               error)

    def info(self, name: str) -> BackendInfo:
        """The entry for ``name`` or an alias of it; :class:`UnknownBackendError` otherwise."""
        key = self._aliases.get(name, name)
        try:
            return self._by_name[key]
        except KeyError:
            raise UnknownBackendError(self._unknown_message(name)) from None

    def get(self, name: str) -> type[ExecutionBackend]:
        """The backend class registered as ``name`` (or an alias of it)."""
        return self.info(name).load()

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._aliases

    def __iter__(self) -> Iterator[BackendInfo]:
        return iter(sorted(self._by_name.values(), key=lambda info: info.name))

    def _unknown_message(self, name: str) -> str:
        known = sorted({*self._by_name, *self._aliases})
        message = f"no asyncflow backend named {name!r}. Installed: {', '.join(known) or 'none'}."
        close = difflib.get_close_matches(name, known, n=1)
        if close and name not in KNOWN_DISTRIBUTIONS:  # a typo of an installed name
            return message + f" Did you mean {close[0]!r}?"
        dist = KNOWN_DISTRIBUTIONS.get(name, f"asyncflow-{name.replace('_', '-')}")
        return message + f" To install it: pip install {dist}"


def _check_class(cls: object, name: str | None) -> None:
    if not (isinstance(cls, type) and issubclass(cls, ExecutionBackend)):
        raise TypeError(f"backend {name or cls!r}: {cls!r} is not a subclass of "
                        "asyncflow.ExecutionBackend")
    declared = getattr(cls, "name", None)
    if not isinstance(declared, str) or not declared:
        raise TypeError(f"{cls.__qualname__} must declare a class attribute `name`")
    if name is not None and declared != name:
        raise ValueError(f"{cls.__qualname__} declares name {declared!r} but was registered "
                         f"as {name!r}")


def conflict(name: str, first: str, second: str) -> BackendConflictError:
    """The error for two providers of one backend name."""
    return BackendConflictError(
        f"backend name {name!r} is claimed by both {first} and {second}; uninstall one of "
        "them, or block one with ASYNCFLOW_DISABLE_PLUGINS=<entry point name>")


def _provenance(info: BackendInfo) -> str:
    if info.distribution:
        return f"{info.distribution} {info.version or ''}".rstrip()
    target = info.target if isinstance(info.target, str) else info.target.__module__
    return f"{target} (not from an installed distribution)"
