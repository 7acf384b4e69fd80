"""Issue 2, point 10: pluggy hookspecs, the lazily built plugin manager, entry points, the
registry with aliases, and errors that help.

Entry-point tests install tiny real distributions (a ``*.dist-info`` folder with
``entry_points.txt``) on a temporary path and run in a fresh interpreter, which builds a fresh
plugin manager from them exactly as it would for a pip-installed plugin.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
from loop_backend import FunctionsOnlyBackend, LoopBackend
from recording_observer import Observer

import asyncflow
from asyncflow import ExecutionBackend, TaskRecord, WorkflowEngine
from asyncflow.errors import PluginLoadError, UnknownBackendError
from asyncflow.registry import BackendRegistry

HOOKS = """\
import asyncflow
from loop_backend import LoopBackend


class {cls}(LoopBackend):
    name = "{backend}"


@asyncflow.hookimpl
def asyncflow_register_backends(registry):
    registry.add({cls})
"""


def install(site: Path, dist: str, version: str, entry: str, module: str,
            hooks: str) -> None:
    """A distribution ``dist`` whose ``asyncflow`` entry point ``entry`` is ``module.hooks``."""
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "hooks.py").write_text(hooks)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[asyncflow]\n{entry} = {module}.hooks\n")


def run_python(site: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees the distributions installed in ``site``."""
    tests = Path(__file__).parent
    environ = {**os.environ, **env,
               "PYTHONPATH": os.pathsep.join([str(site), str(tests),
                                              os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def expect_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- the registry ----------------------------------------------------------------------------


def test_an_unknown_name_lists_installed_backends_and_suggests_the_closest() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        asyncflow.registry().get("lopp")
    message = str(caught.value)
    assert "no asyncflow backend named 'lopp'" in message
    assert "Installed:" in message and "loop" in message and "noop" in message
    assert message.endswith("Did you mean 'loop'?")  # a typo: no distribution to install


def test_an_unknown_name_close_to_nothing_says_what_to_install() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        asyncflow.registry().get("quantum_annealer")
    message = str(caught.value)
    assert "Did you mean" not in message
    assert message.endswith("To install it: pip install asyncflow-quantum-annealer")


def test_a_first_party_backend_missing_gets_its_distribution_name(tmp_path: Path) -> None:
    out = expect_ok(run_python(tmp_path, """
        import asyncflow
        try:
            asyncflow.registry().get("radical")
        except asyncflow.UnknownBackendError as exc:
            print(exc)
        """, ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "Installed: dry_run, noop." in out and "pip install asyncflow-radical" in out


async def test_create_with_an_unknown_name_fails_before_anything_starts() -> None:
    with pytest.raises(UnknownBackendError, match="Did you mean 'loop'"):
        await WorkflowEngine.create(backend="lopp")


async def test_aliases_resolve_to_the_canonical_name() -> None:
    assert asyncflow.registry().get("on_loop") is LoopBackend
    assert "on_loop" in asyncflow.registry() and "functions_only" in asyncflow.registry()
    async with await WorkflowEngine.create(backend="on_loop") as flow:
        assert list(flow.backends) == ["loop"] and isinstance(flow.backend, LoopBackend)


def test_the_registry_checks_what_it_is_given() -> None:
    registry = BackendRegistry()
    with pytest.raises(TypeError, match=r"not a subclass of asyncflow\.ExecutionBackend"):
        registry.add(dict, name="mapping")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="declares name 'functions_only' but was registered"):
        registry.add(FunctionsOnlyBackend, name="other")
    with pytest.raises(ValueError, match="lower snake case"):
        registry.add("pkg.backend:Cls", name="Bad-Name")
    with pytest.raises(TypeError, match="needs name="):
        registry.add("pkg.backend:Cls")
    registry.add(LoopBackend)
    registry.add(LoopBackend)  # the same class again is not a conflict
    assert registry.names() == ["loop"]


def test_a_lazy_path_is_imported_on_first_use() -> None:
    registry = BackendRegistry()
    registry.add("loop_backend:FunctionsOnlyBackend", name="functions_only")
    assert registry.info("functions_only").target == "loop_backend:FunctionsOnlyBackend"
    assert registry.get("functions_only") is FunctionsOnlyBackend


# -- entry points ----------------------------------------------------------------------------


def test_an_entry_point_plugin_registers_its_backend(tmp_path: Path) -> None:
    install(tmp_path, "asyncflow-extra", "1.2", "extra", "extra_plugin",
            HOOKS.format(cls="Extra", backend="extra"))
    out = expect_ok(run_python(tmp_path, """
        import asyncio, asyncflow
        info = asyncflow.registry().info("extra")
        print(info.distribution, info.version, info.load().__name__)
        async def main():
            async with await asyncflow.WorkflowEngine.create(backend="extra") as flow:
                @flow.function_task
                async def one():
                    return 1
                print(await one())
        asyncio.run(main())
        """))
    assert out.split() == ["asyncflow-extra", "1.2", "Extra", "1"]


@pytest.mark.parametrize("same_entry_point", [False, True])
def test_two_distributions_claiming_one_name_is_an_error_naming_both(
        tmp_path: Path, same_entry_point: bool) -> None:
    install(tmp_path, "clash-one", "1.0", "clash" if same_entry_point else "one", "clash_one",
            HOOKS.format(cls="One", backend="clash"))
    install(tmp_path, "clash-two", "2.0", "clash" if same_entry_point else "two", "clash_two",
            HOOKS.format(cls="Two", backend="clash"))
    out = expect_ok(run_python(tmp_path, """
        import asyncio, asyncflow
        try:
            asyncflow.registry().get("clash")
        except asyncflow.BackendConflictError as exc:
            print(exc)
        async def main():  # the other backends still work
            async with await asyncflow.WorkflowEngine.create(backend="noop") as flow:
                @flow.function_task
                async def one(): ...
                print(await one())
        asyncio.run(main())
        """))
    assert "'clash'" in out and "clash-one 1.0" in out and "clash-two 2.0" in out
    assert out.rstrip().endswith("Dummy Output")


def test_a_plugin_that_fails_to_import_names_its_distribution_and_the_cause(
        tmp_path: Path) -> None:
    install(tmp_path, "asyncflow-broken", "0.3", "broken", "broken_plugin",
            "import a_dependency_that_is_not_installed\n")
    result = run_python(tmp_path, """
        import asyncflow
        try:
            asyncflow.registry().get("broken")
        except asyncflow.PluginLoadError as exc:
            print(exc)
            print(type(exc.__cause__).__name__)
        print(asyncflow.registry().get("noop").__name__)
        """)
    out = expect_ok(result)
    assert "'broken'" in out and "asyncflow-broken 0.3" in out
    assert "a_dependency_that_is_not_installed" in out
    assert "ModuleNotFoundError" in out and out.rstrip().endswith("NoopExecutionBackend")
    assert "asyncflow-broken 0.3" in result.stderr  # warned about when the plugins load


def test_a_plugin_with_a_misspelt_hook_is_refused_and_named(tmp_path: Path) -> None:
    install(tmp_path, "asyncflow-typo", "0.1", "typo", "typo_plugin", textwrap.dedent("""
        import asyncflow

        @asyncflow.hookimpl
        def asyncflow_task_state_chnged(engine, task, old, new): ...
        """))
    out = expect_ok(run_python(tmp_path, """
        import asyncflow
        try:
            asyncflow.registry().get("typo")
        except asyncflow.PluginLoadError as exc:
            print(exc)
        print(asyncflow.registry().get("noop").__name__)
        """))
    assert "asyncflow-typo 0.1" in out and "asyncflow_task_state_chnged" in out
    assert out.rstrip().endswith("NoopExecutionBackend")


def test_plugins_can_be_disabled_by_name(tmp_path: Path) -> None:
    install(tmp_path, "asyncflow-extra", "1.0", "extra", "extra_plugin",
            HOOKS.format(cls="Extra", backend="extra"))
    out = expect_ok(run_python(tmp_path, """
        import asyncflow
        print("extra" in asyncflow.registry())
        """, ASYNCFLOW_DISABLE_PLUGINS="extra"))
    assert out.split() == ["False"]


# -- registering plugin objects ----------------------------------------------------------------


def test_check_pending_rejects_a_misspelt_hook_and_leaves_the_manager_usable() -> None:
    class Misspelt:
        @asyncflow.hookimpl
        def asyncflow_engine_stoped(self, engine: object) -> None: ...

    with pytest.raises(pluggy.PluginValidationError, match="asyncflow_engine_stoped"):
        asyncflow.register(Misspelt())
    observer = Observer()
    asyncflow.register(observer)  # the bad plugin is gone: the next one registers fine
    asyncflow.plugin_manager().unregister(observer)


def test_an_async_hook_is_refused() -> None:
    class Async:
        @asyncflow.hookimpl
        async def asyncflow_engine_started(self, engine: object) -> None: ...

    with pytest.raises(PluginLoadError, match="asyncflow_engine_started is `async def`"):
        asyncflow.register(Async(), name="async-observer")
    assert not asyncflow.plugin_manager().has_plugin("async-observer")


def test_a_plugin_registered_later_still_adds_its_backends() -> None:
    class Late(ExecutionBackend):
        name = "late_backend"

        async def start(self) -> None: ...
        async def submit(self, tasks: object) -> None: ...
        async def cancel(self, uid: str) -> bool: return False
        async def shutdown(self) -> None: ...

    class LatePlugin:
        @asyncflow.hookimpl
        def asyncflow_register_backends(self, registry: BackendRegistry) -> None:
            registry.add(Late)

    plugin = LatePlugin()
    asyncflow.register(plugin)  # historic: the registry already exists and still hears it
    try:
        assert asyncflow.registry().get("late_backend") is Late
    finally:
        asyncflow.plugin_manager().unregister(plugin)


async def test_an_observer_that_raises_is_logged_once_and_switched_off(
        caplog: pytest.LogCaptureFixture, backend: LoopBackend) -> None:
    class Broken:
        @asyncflow.hookimpl
        def asyncflow_engine_started(self) -> None:
            raise RuntimeError("observer broke on start")

        @asyncflow.hookimpl
        def asyncflow_task_state_changed(self) -> None:
            raise RuntimeError("observer broke on a state change")

        @asyncflow.hookimpl
        def asyncflow_engine_stopped(self) -> None:
            raise RuntimeError("observer broke on stop")

    plugin = Broken()
    asyncflow.register(plugin, name="broken-observer")
    caplog.set_level(logging.ERROR, logger="asyncflow.plugins")
    try:
        async with await WorkflowEngine.create(backend=backend) as flow:
            @flow.function_task
            async def add(a: int, b: int) -> int:
                return a + b

            assert await add(add(1, 2), 3) == 6
    finally:
        asyncflow.plugin_manager().unregister(plugin)
    assert backend.shutdown_count == 1
    failures = [r for r in caplog.records if "'broken-observer'" in r.getMessage()]
    # Its first failure switched it off for this engine: its other hooks were never called.
    assert [r.exc_info[1].args[0] for r in failures if r.exc_info and r.exc_info[1]] == [
        "observer broke on start"]
    assert "this engine stops calling it" in failures[0].getMessage()


async def test_a_broken_observer_of_one_engine_leaves_the_others_alone(
        backend: LoopBackend) -> None:
    class BreaksOnce:
        plugin_name = "breaks-once"

        def __init__(self) -> None:
            self.calls = 0

        @asyncflow.hookimpl
        def asyncflow_task_state_changed(self) -> None:
            self.calls += 1
            raise RuntimeError("broken")

    broken, healthy = BreaksOnce(), Observer()
    async with WorkflowEngine.create(backend=backend, observers=[broken, healthy]) as flow:
        @flow.function_task
        async def one() -> int:
            return 1

        assert await asyncio.gather(one(), one(), one()) == [1, 1, 1]
    assert broken.calls == 1
    assert len(healthy.stopped) == 1 and len(healthy.changes) >= 3


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
async def test_a_wrapper_hook_is_refused_with_the_plugins_name(
        option: str, backend: LoopBackend) -> None:
    class Wraps:
        plugin_name = "wrapping-observer"

        @asyncflow.hookimpl(**{option: True})
        def asyncflow_engine_started(self, engine: object) -> object:
            yield

    with pytest.raises(PluginLoadError, match="plugin 'wrapping-observer': hook "
                                              "asyncflow_engine_started is a wrapper"):
        await WorkflowEngine.create(backend=backend, observers=[Wraps()])
    with pytest.raises(PluginLoadError, match="plugin 'global-wrapper'"):
        asyncflow.register(Wraps(), name="global-wrapper")
    assert not asyncflow.plugin_manager().has_plugin("global-wrapper")
    assert backend.shutdown_count == 0


async def test_an_engines_own_observer_opens_and_closes_with_it(backend: LoopBackend) -> None:
    observer = Observer()
    flow = await WorkflowEngine.create(backend=backend, observers=[observer])
    assert flow.observers == (observer,) and observer.started == [flow]
    await flow.shutdown()
    assert observer.stopped == [(flow, None)]
    other = await WorkflowEngine.create(backend=LoopBackend())
    await other.shutdown()
    assert observer.started == [flow]  # an engine's observer hears only that engine


async def test_every_state_change_is_one_the_hookspec_documents() -> None:
    documented = {("PENDING", "RUNNING"), ("PENDING", "DONE"), ("PENDING", "FAILED"),
                  ("PENDING", "CANCELLED"), ("RUNNING", "DONE"), ("RUNNING", "FAILED"),
                  ("RUNNING", "CANCELLED"), ("RUNNING", "PENDING"), ("PENDING", "PENDING")}
    observer = Observer()
    attempts = {"n": 0}
    async with WorkflowEngine.create(backend=LoopBackend(), observers=[observer]) as flow:
        @flow.function_task(retries=2)
        async def flaky() -> int:
            attempts["n"] += 1
            if attempts["n"] < 3:
                raise ValueError("not yet")
            return 3

        @flow.function_task
        async def broken(x: int) -> int:
            raise ValueError(x)

        @flow.function_task
        async def after(x: int) -> int:
            return x

        @flow.function_task
        async def forever() -> None:
            await asyncio.Event().wait()

        @flow.block
        async def pipeline() -> int:
            return await after(await flaky())

        assert await pipeline() == 3
        with pytest.raises(asyncflow.DependencyFailureError):
            await after(broken(1))
        hanging = forever()
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
    seen = {(old.value, new.value) for _, old, new, _ in observer.changes}
    assert seen <= documented
    assert ("RUNNING", "PENDING") in seen or ("PENDING", "PENDING") in seen  # the retry


class Configured:
    """A plugin that reads the configuration of each engine, and may refuse it."""

    def __init__(self) -> None:
        self.refuse = self.sit_out = False
        self.seen: list[tuple[WorkflowEngine, object]] = []
        self.stopped: list[BaseException | None] = []
        self.created: list[str] = []

    @asyncflow.hookimpl
    def asyncflow_engine_configured(self, engine: WorkflowEngine,
                                    settings: object) -> bool | None:
        assert engine.backend.started_count == 0  # type: ignore[attr-defined]  # not yet
        self.seen.append((engine, settings))
        if self.refuse:
            raise asyncflow.ConfigError("the plugin refuses this configuration")
        return False if self.sit_out else None

    @asyncflow.hookimpl
    def asyncflow_task_created(self, task: TaskRecord) -> None:
        self.created.append(task.name)

    @asyncflow.hookimpl
    def asyncflow_engine_stopped(self, error: BaseException | None) -> None:
        self.stopped.append(error)


@pytest.mark.timeout(30)
async def test_the_configured_hook_gets_what_create_read_and_may_refuse_it() -> None:
    plugin = Configured()
    asyncflow.register(plugin)
    try:
        async with WorkflowEngine.create(LoopBackend()) as flow:
            ((engine, settings),) = plugin.seen
            assert engine is flow and settings is flow.settings is not None
        direct = WorkflowEngine([LoopBackend()])  # no configuration: the hook does not fire
        await direct._start()
        await direct.shutdown()
        assert len(plugin.seen) == 1 and direct.settings is None
        plugin.refuse = True
        backend = LoopBackend()
        with pytest.raises(asyncflow.ConfigError, match="refuses"):
            await WorkflowEngine.create(backend)
        assert backend.started_count == 0  # never started
        assert isinstance(plugin.stopped[-1], asyncflow.ConfigError)
        plugin.refuse, plugin.sit_out = False, True  # False: none of its hooks, this engine
        stops = len(plugin.stopped)
        async with WorkflowEngine.create(LoopBackend()) as flow:
            @flow.function_task
            async def unseen() -> int:
                return 1

            assert await unseen() == 1
        assert plugin.created == [] and len(plugin.stopped) == stops
    finally:
        asyncflow.plugin_manager().unregister(plugin)
