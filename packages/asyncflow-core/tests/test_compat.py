"""Issue 2, points 11 and 12: ``radical.asyncflow`` is the same package; backend classes
resolve through the registry; ``import asyncflow`` is cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import radical.asyncflow
import radical.asyncflow.errors

import asyncflow
import asyncflow.errors

BACKEND_CLASSES = {
    "ConcurrentExecutionBackend": ("concurrent", "asyncflow-concurrent"),
    "LocalExecutionBackend": ("concurrent", "asyncflow-concurrent"),
    "DaskExecutionBackend": ("dask", "asyncflow-dask"),
    "RadicalExecutionBackend": ("radical", "asyncflow-radical"),
    "NoopExecutionBackend": ("noop", "asyncflow-core"),
}


def run_python(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_radical_asyncflow_gives_the_same_objects() -> None:
    assert radical.asyncflow.__all__ == asyncflow.__all__
    for name in asyncflow.__all__:
        assert getattr(radical.asyncflow, name) is getattr(asyncflow, name), name
    from radical.asyncflow import WorkflowEngine
    from radical.asyncflow.errors import DependencyFailureError

    assert WorkflowEngine is asyncflow.WorkflowEngine
    assert DependencyFailureError is asyncflow.errors.DependencyFailureError
    assert radical.asyncflow.errors.__all__ == asyncflow.errors.__all__


@pytest.mark.parametrize("attr", sorted(BACKEND_CLASSES))
def test_backend_classes_resolve_through_the_registry_from_either_name(attr: str) -> None:
    name, distribution = BACKEND_CLASSES[attr]
    if name in asyncflow.registry():  # the plugin is installed here
        cls = asyncflow.registry().get(name)
        assert getattr(asyncflow, attr) is cls
        assert getattr(radical.asyncflow, attr) is cls
        assert cls.name == name
    else:
        for module in (asyncflow, radical.asyncflow):
            with pytest.raises(ImportError, match=f"pip install {distribution}") as caught:
                getattr(module, attr)
            assert caught.value.name == distribution


def test_a_missing_backend_class_is_an_import_error_naming_its_distribution() -> None:
    # With no plugin loaded, only the built-in noop backend exists.
    out = run_python("""
        from radical.asyncflow import NoopExecutionBackend, WorkflowEngine
        print(NoopExecutionBackend.name)
        for attr in ("ConcurrentExecutionBackend", "DaskExecutionBackend",
                     "RadicalExecutionBackend"):
            try:
                exec(f"from radical.asyncflow import {attr}")
            except ImportError as exc:
                print(exc)
        """, ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD="1")
    lines = out.splitlines()
    assert lines[0] == "noop"
    assert lines[1:] == [
        "ConcurrentExecutionBackend is provided by asyncflow-concurrent, which is not "
        "installed: pip install asyncflow-concurrent",
        "DaskExecutionBackend is provided by asyncflow-dask, which is not installed: "
        "pip install asyncflow-dask",
        "RadicalExecutionBackend is provided by asyncflow-radical, which is not installed: "
        "pip install asyncflow-radical",
    ]


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        asyncflow.NoSuchThing  # noqa: B018
    assert "DaskExecutionBackend" in dir(asyncflow)


def test_importing_asyncflow_imports_no_backend() -> None:
    out = run_python("""
        import json, sys
        import asyncflow
        from radical.asyncflow import WorkflowEngine
        print(json.dumps({"modules": sorted(sys.modules),
                          "plugins_loaded": asyncflow._plugins._pm is not None}))
        """)
    report = json.loads(out)
    modules = set(report["modules"])
    assert not report["plugins_loaded"]  # entry points are read on first use, not on import
    heavy = {"asyncflow._plugins.noop", "asyncflow_concurrent", "asyncflow_dask",
             "asyncflow_radical", "dask", "distributed", "radical.pilot", "cloudpickle", "rich",
             "concurrent.futures.process", "multiprocessing", "sqlite3", "tomllib",
             # the layers above the kernel load when create() or a command needs them
             "asyncflow._setup", "asyncflow.config", "asyncflow.journal", "asyncflow.progress",
             "asyncflow.graph", "asyncflow.cli", "asyncflow.report"}
    assert not modules & heavy, modules & heavy
    assert not any(m.startswith(("asyncflow_", "dask.", "radical.pilot")) for m in modules)
