"""The plugin manager: built lazily, once, from the ``asyncflow`` entry-point group.

Set-up order (pluggy's host recipe): hookspecs -> the built-in plugin (the ``noop`` backend,
through the same hook as everyone else) -> entry points, one at a time so a broken plugin is
reported with its distribution instead of breaking the others -> ``check_pending()``.

Environment:
    ``ASYNCFLOW_DISABLE_PLUGINS=a,b``      do not load these entry points
    ``ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD=1`` load no entry point at all (hermetic runs)
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pluggy

from asyncflow import hookspecs
from asyncflow.errors import PluginLoadError
from asyncflow.hookspecs import hookimpl
from asyncflow.registry import BackendRegistry, conflict

__all__ = ["Observers", "hookimpl", "plugin_manager", "register", "registry"]

log = logging.getLogger("asyncflow.plugins")

GROUP = "asyncflow"

_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_registry: BackendRegistry | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    if _pm is None:
        _build()
    assert _pm is not None
    return _pm


def registry() -> BackendRegistry:
    """The process-wide backend registry, filled by every plugin on first use."""
    if _registry is None:
        _build()
    assert _registry is not None
    return _registry


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (a module or an instance with hook implementations) now.

    Its ``asyncflow_register_backends`` runs at once, since that hook is historic.
    """
    _register_checked(plugin_manager(), plugin, name)


def _register_checked(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    """Register ``plugin`` and check its hooks; a plugin that fails is not left registered,
    so that it cannot fail every later ``check_pending()`` too."""
    _reject_coroutines(plugin, name)
    registered = pm.register(plugin, name=name)
    try:
        pm.check_pending()
        _reject_wrappers(pm, plugin, registered)
    except Exception:
        pm.unregister(plugin, name=registered)
        raise


def _build() -> None:
    global _pm, _registry
    with _lock:
        if _pm is not None:
            return
        pm = pluggy.PluginManager(GROUP)
        pm.add_hookspecs(hookspecs)
        reg = BackendRegistry()
        pm.hook.asyncflow_register_backends.call_historic(kwargs={"registry": reg})
        from asyncflow._plugins import noop as _noop

        pm.register(_noop, name="asyncflow.noop")
        if not os.environ.get("ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD"):
            _load_entry_points(pm, reg)
        pm.check_pending()
        _registry, _pm = reg, pm


def _load_entry_points(pm: pluggy.PluginManager, reg: BackendRegistry) -> None:
    blocked = {n.strip() for n in os.environ.get("ASYNCFLOW_DISABLE_PLUGINS", "").split(",")}
    from importlib import metadata  # here, not at the top: it would double `import asyncflow`

    loaded: dict[str, str] = {}  # entry point name -> the distribution that provided it
    for ep in metadata.entry_points(group=GROUP):
        if ep.name in blocked:
            continue
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        where = f"{dist} {version}" if dist else f"entry point {ep.value}"
        if ep.name in loaded:
            if loaded[ep.name] != where:  # two distributions, one entry point name
                clash = conflict(ep.name, loaded[ep.name], where)
                log.warning("%s", clash)
                reg._refuse(ep.name, clash)
            continue  # else the same distribution seen twice on sys.path
        loaded[ep.name] = where
        # A broken plugin must not break the others: its name is kept with the error, which
        # using it raises, so the user learns which distribution to fix.
        step = "import"
        try:
            plugin = ep.load()
            step = "register"
            reg._current = (dist, version)
            try:
                _register_checked(pm, plugin, ep.name)
            finally:
                reg._current = (None, None)
        except Exception as exc:
            error = PluginLoadError(f"asyncflow plugin {ep.name!r} from {where} failed to "
                                    f"{step}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            log.warning("%s", error)
            reg._refuse(ep.name, error, ep.value, dist, version)


def _reject_coroutines(plugin: object, name: str | None) -> None:
    for attr in dir(plugin):
        if attr.startswith("asyncflow_") and inspect.iscoroutinefunction(getattr(plugin, attr)):
            raise PluginLoadError(f"plugin {name or plugin!r}: hook {attr} is `async def`; "
                                  "hooks must be plain functions (buffer I/O yourself)")


def _reject_wrappers(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    # The engine calls observers itself, one after the other: it has nothing to wrap.
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                raise PluginLoadError(f"plugin {name!r}: hook {caller.name} is a wrapper; "
                                      "asyncflow calls observers directly, so it has none")


Impl = tuple[str, Callable[..., Any], tuple[str, ...]]  # plugin name, function, argnames


class Observers:
    """The observer hooks' implementations for one engine: the process-wide plugins' and
    that engine's own observers' (checked here as plugins are when they load).

    The engine checks ``if observers.task_state_changed:`` before building arguments, so an
    unused hook costs one truth test. An observer that raises is logged once and then left
    out of every hook of this engine: a broken plugin never slows the run down again.
    """

    __slots__ = ("engine_configured", "engine_started", "engine_stopped", "service_exited",
                 "task_created", "task_state_changed")

    engine_configured: list[Impl]
    engine_started: list[Impl]
    engine_stopped: list[Impl]
    service_exited: list[Impl]
    task_created: list[Impl]
    task_state_changed: list[Impl]

    def __init__(self, pm: pluggy.PluginManager, own: Sequence[object] = ()) -> None:
        managers = [pm]
        if own:  # a manager of this engine's own: pluggy checks their hooks as it does others'
            mine = pluggy.PluginManager(GROUP)
            mine.add_hookspecs(hookspecs)
            for observer in own:
                _register_checked(mine, observer, getattr(observer, "plugin_name", None)
                                  or type(observer).__name__)
            managers.append(mine)
        for hook in self.__slots__:
            impls = [(i.plugin_name, i.function, tuple(i.argnames))
                     for m in managers
                     for i in reversed(getattr(m.hook, f"asyncflow_{hook}").get_hookimpls())]
            setattr(self, hook, impls)

    def configure(self, **kwargs: Any) -> None:
        """Call ``asyncflow_engine_configured``. Unlike an observer, an implementation that
        raises stops the engine's start; one that returns ``False`` sits this engine out:
        none of its plugin's hooks is called for it, at no cost per task."""
        idle = [plugin for plugin, function, argnames in self.engine_configured
                if function(*[kwargs[a] for a in argnames]) is False]
        if idle:
            self._drop(idle)

    def call(self, impls: list[Impl], **kwargs: Any) -> None:
        broken = []
        for plugin, function, argnames in impls:
            try:
                function(*[kwargs[a] for a in argnames])
            except Exception:
                log.exception("asyncflow plugin %r failed in %s; this engine stops calling "
                              "it and the workflow goes on", plugin, function.__name__)
                broken.append(plugin)
        if broken:
            self._drop(broken)

    def _drop(self, plugins: list[str]) -> None:
        for hook in self.__slots__:  # in place: the engine holds these lists
            impls = getattr(self, hook)
            impls[:] = [impl for impl in impls if impl[0] not in plugins]
