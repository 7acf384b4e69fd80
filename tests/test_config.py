"""Issue 4, point 1: every configuration source, their precedence, and what create() does
with the result. Files are real files in a temporary project; the ``probe`` backend is a
plugin installed beside it (see ``_probe.py``) whose tasks return the options it was built
with.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from _probe import clean_environment, write

import asyncflow
from asyncflow import WorkflowEngine, config
from asyncflow.config import Layer, load, overriding

pytestmark = pytest.mark.usefixtures("probe_plugin", "project")


# -- each source ---------------------------------------------------------------------------


def test_nothing_configured(project: Path) -> None:
    settings = load()
    assert (settings.backend, settings.backends, settings.sources, settings.files) == (
        [], {}, {}, [])
    assert settings.source_of("backend") == "built-in default"


def test_user_file_under_xdg_config_home(tmp_path: Path) -> None:
    user = write(tmp_path / "xdg" / "asyncflow" / "config.toml",
                 'backend = "probe"\n[backends.probe]\nworkers = 2\n')
    settings = load()
    assert settings.backend == ["probe"]
    assert settings.backends == {"probe": {"workers": 2}}
    assert settings.sources == {"backend": str(user), "backends.probe.workers": str(user)}
    assert settings.files == [str(user)]


def test_user_file_defaults_to_home_config(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    user = write(tmp_path / "home" / ".config" / "asyncflow" / "config.toml",
                 'backend = "probe"\n')
    assert load().sources == {"backend": str(user)}


def test_pyproject_tool_table_found_from_a_subfolder(project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pyproject = write(project / "pyproject.toml", '[project]\nname = "x"\n\n[tool.asyncflow]\n'
                      'backend = ["probe", "noop"]\n[tool.asyncflow.backends.probe]\n'
                      'label = "from pyproject"\n')
    deeper = project / "src" / "pkg"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    settings = load()
    assert settings.backend == ["probe", "noop"]
    assert settings.backends == {"probe": {"label": "from pyproject"}}
    assert settings.source_of("backend") == f"{pyproject} [tool.asyncflow]"


def test_nearest_pyproject_is_the_project_even_without_a_table(project: Path,
                                                               tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.asyncflow]\nbackend = "outer"\n')
    write(project / "pyproject.toml", '[project]\nname = "inner"\n')
    assert load().backend == []


def test_pyproject_search_stops_at_the_repository_root(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "pyproject.toml", '[tool.asyncflow]\nbackend = "above the repository"\n')
    repository = tmp_path / "repository"
    (repository / ".git").mkdir(parents=True)
    (repository / "sub").mkdir()
    monkeypatch.chdir(repository / "sub")
    assert load().backend == []


def test_asyncflow_toml_in_the_working_directory(project: Path) -> None:
    local = write(project / "asyncflow.toml", 'backend = "noop"\n')
    assert load().sources == {"backend": str(local)}


def test_file_named_by_asyncflow_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = write(tmp_path / "elsewhere" / "cluster.toml", '[backends.probe]\nworkers = 8\n')
    monkeypatch.setenv("ASYNCFLOW_CONFIG", str(named))
    settings = load()
    assert settings.backends == {"probe": {"workers": 8}}
    assert settings.files == [str(named)]


@pytest.mark.parametrize(("raw", "names"), [("dask", ["dask"]), ("probe, noop", ["probe", "noop"]),
                                            ("probe,", ["probe"])])
def test_backend_from_environment(raw: str, names: list[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKEND", raw)
    settings = load()
    assert settings.backend == names
    assert settings.source_of("backend") == "environment variable ASYNCFLOW_BACKEND"


def test_empty_backend_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKEND", "")
    assert load().backend == []


@pytest.mark.parametrize(("raw", "value"), [
    ("4", 4), ("2.5", 2.5), ("true", True), ("[1, 2]", [1, 2]), ('"4"', "4"),
    ("tcp://scheduler:8786", "tcp://scheduler:8786"), ("local.localhost", "local.localhost"),
    ("  spaced  ", "spaced"),
])
def test_option_variables_are_toml_literals_or_strings(raw: str, value: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__DASK__N_WORKERS", raw)
    settings = load()
    assert settings.backends == {"dask": {"n_workers": value}}
    assert settings.sources["backends.dask.n_workers"] == (
        "environment variable ASYNCFLOW_BACKENDS__DASK__N_WORKERS")


def test_nested_option_variable_merges_into_a_table(project: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "asyncflow.toml", '[backends.radical.resources]\ncores = 4\ngpus = 0\n')
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__RADICAL__RESOURCES__GPUS", "2")
    settings = load()
    assert settings.backends == {"radical": {"resources": {"cores": 4, "gpus": 2}}}
    assert settings.sources["backends.radical.resources.cores"] == str(project / "asyncflow.toml")
    assert settings.sources["backends.radical.resources.gpus"].startswith("environment variable")


# -- precedence ----------------------------------------------------------------------------


def test_each_source_beats_every_source_below_it(project: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def table(name: str, extra: str = "") -> str:
        return f'backend = "{name}"\n[backends.probe]\nlabel = "{name}"\n{extra}'

    user = write(tmp_path / "xdg" / "asyncflow" / "config.toml", table("user", "workers = 1\n"))
    pyproject = write(project / "pyproject.toml", "[tool.asyncflow]\n" + table(
        "pyproject", "ratio = 2.0\n").replace("[backends", "[tool.asyncflow.backends"))
    local = write(project / "asyncflow.toml", table("cwd"))
    named = write(tmp_path / "named.toml", table("env_file"))
    given = write(tmp_path / "given.toml", table("create_config"))
    monkeypatch.setenv("ASYNCFLOW_CONFIG", str(named))
    monkeypatch.setenv("ASYNCFLOW_BACKEND", "env")
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__PROBE__LABEL", "env")
    command_line = Layer("command line", {"backend": "command_line",
                                          "backends": {"probe": {"label": "command_line"}}})

    active = {"create_config", "command_line"}
    removals = {
        "create_config": lambda: active.discard("create_config"),
        "command_line": lambda: active.discard("command_line"),
        "env": lambda: (monkeypatch.delenv("ASYNCFLOW_BACKEND"),
                        monkeypatch.delenv("ASYNCFLOW_BACKENDS__PROBE__LABEL")),
        "env_file": lambda: monkeypatch.delenv("ASYNCFLOW_CONFIG"),
        "cwd": local.unlink,
        "pyproject": pyproject.unlink,
        "user": user.unlink,
    }
    sources = {"create_config": str(given), "command_line": "command line",
               "env": "environment variable ASYNCFLOW_BACKEND", "env_file": str(named),
               "cwd": str(local), "pyproject": f"{pyproject} [tool.asyncflow]", "user": str(user)}
    for top, remove in removals.items():
        layers = [command_line] if "command_line" in active else []
        with overriding(*layers):
            settings = load(given if "create_config" in active else None)
        assert settings.backend == [top]
        assert settings.backends["probe"]["label"] == top
        assert settings.source_of("backend") == sources[top]
        # values no higher source sets survive from the lower ones, with their source
        if top != "user":
            assert settings.backends["probe"]["workers"] == 1
            assert settings.source_of("backends.probe.workers") == str(user)
        remove()
    assert load().backend == []


async def test_create_arguments_beat_every_source(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "asyncflow.toml", 'backend = "noop"\n[backends.probe]\nworkers = 3\n'
          'label = "file"\n')
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__PROBE__LABEL", "env")
    with overriding(Layer("command line", {"backends": {"probe": {"ratio": 0.5}}})):
        flow = await WorkflowEngine.create(backend="probe", workers=9)
    try:
        assert list(flow.backends) == ["probe"]
        assert await flow.function_task(len)("x") == {
            "workers": 9, "label": "env", "ratio": 0.5, "mode": "fast", "tags": None}
    finally:
        await flow.shutdown()


# -- what create() does with the configuration ---------------------------------------------


async def test_create_without_backend_uses_the_configured_one(project: Path) -> None:
    write(project / "asyncflow.toml", 'backend = "probe"\n[backends.probe]\nworkers = 3\n'
          'tags = ["a", "b"]\nmode = "slow"\n')
    flow = await WorkflowEngine.create()
    try:
        assert flow.default_backend == "probe"
        assert await flow.function_task(len)("x") == {
            "workers": 3, "label": "default", "ratio": 1.0, "mode": "slow", "tags": ["a", "b"]}
    finally:
        await flow.shutdown()


async def test_create_options_go_to_the_configured_default(project: Path) -> None:
    write(project / "asyncflow.toml", 'backend = "probe"\n[backends.probe]\nworkers = 3\n')
    flow = await WorkflowEngine.create(workers=5, label="code")
    try:
        options = await flow.function_task(len)("x")
        assert (options["workers"], options["label"]) == (5, "code")
    finally:
        await flow.shutdown()


async def test_a_list_starts_several_backends_and_the_first_is_the_default(
        project: Path) -> None:
    write(project / "asyncflow.toml", 'backend = ["probe", "noop"]\n')
    flow = await WorkflowEngine.create()
    try:
        assert list(flow.backends) == ["probe", "noop"]
        routed = flow.function_task(backend="noop")(len)
        assert await routed("x") == "Dummy Output"
        assert (await flow.function_task(len)("x"))["workers"] == 1
    finally:
        await flow.shutdown()


async def test_create_config_argument_is_a_source(project: Path, tmp_path: Path) -> None:
    write(project / "asyncflow.toml", 'backend = "noop"\n')
    given = write(tmp_path / "run.toml", 'backend = "probe"\n[backends.probe]\nlabel = "run"\n')
    flow = await WorkflowEngine.create(config=given)
    try:
        assert (await flow.function_task(len)("x"))["label"] == "run"
    finally:
        await flow.shutdown()


async def test_option_variable_reaches_the_constructor_typed(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKEND", "probe")
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__PROBE__WORKERS", "7")
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__PROBE__RATIO", "3")  # an int is a fine float
    flow = await WorkflowEngine.create()
    try:
        options = await flow.function_task(len)("x")
        assert (options["workers"], options["ratio"]) == (7, 3)
    finally:
        await flow.shutdown()


async def test_dry_run_replaces_the_configured_backends(project: Path) -> None:
    write(project / "asyncflow.toml", 'backend = ["probe"]\n[backends.probe]\nworkers = 3\n')
    flow = await WorkflowEngine.create(dry_run=True)
    try:
        assert type(flow.backends["probe"]).__name__ == "NoopExecutionBackend"
        assert await flow.function_task(len)("x") == "Dummy Output"
    finally:
        await flow.shutdown()


async def test_command_line_layer_yields_to_an_explicit_backend(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    layer = Layer("command line --backend probe", {"backend": ["probe"]})
    with overriding(layer), caplog.at_level(logging.WARNING, "asyncflow.config"):
        chosen = await WorkflowEngine.create()
        explicit = await WorkflowEngine.create(backend="noop")
    try:
        assert (chosen.default_backend, explicit.default_backend) == ("probe", "noop")
        assert "command line --backend probe does not apply" in caplog.text
    finally:
        await chosen.shutdown()
        await explicit.shutdown()
    assert config.overridden_backend() is None  # the layer ends with its block


@pytest.mark.skipif("concurrent" not in asyncflow.registry(),
                    reason="asyncflow-concurrent is not installed here")
async def test_default_is_concurrent_when_nothing_is_configured(project: Path) -> None:
    flow = await WorkflowEngine.create()
    try:
        assert flow.default_backend == "concurrent"
        assert await flow.function_task(len)("abc") == 3
    finally:
        await flow.shutdown()


def test_nothing_configured_and_no_concurrent_says_what_to_do(tmp_path: Path) -> None:
    code = ("import asyncio, asyncflow\n"
            "try:\n"
            "    asyncio.run(asyncflow.WorkflowEngine.create())\n"
            "except asyncflow.ConfigError as exc:\n"
            "    print(exc)\n")
    env = clean_environment(tmp_path)
    env["ASYNCFLOW_DISABLE_PLUGINS"] = "concurrent"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert "no backend is configured" in done.stdout
    assert "pip install asyncflow-concurrent" in done.stdout



# -- telemetry (read by asyncflow-otel; merged here like every key) -------------------------


def test_telemetry_tables_merge_key_by_key_and_false_replaces_them(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(tmp_path / "xdg" / "asyncflow" / "config.toml",
                 '[telemetry]\nexporter = "otlp"\ncheckpoint_path = "t.jsonl"\n')
    local = write(project / "asyncflow.toml", "[telemetry]\ncheckpoint_interval = 30\n")
    settings = load()
    assert settings.telemetry == {"exporter": "otlp", "checkpoint_path": "t.jsonl",
                                  "checkpoint_interval": 30}
    assert settings.sources == {"telemetry": str(user), "telemetry.exporter": str(user),
                                "telemetry.checkpoint_path": str(user),
                                "telemetry.checkpoint_interval": str(local)}
    monkeypatch.setenv("ASYNCFLOW_TELEMETRY", "off")
    settings = load()
    assert settings.telemetry is False
    assert settings.sources == {"telemetry": "environment variable ASYNCFLOW_TELEMETRY"}
    with overriding(config.option_layer("telemetry=console", None)):
        settings = load()
    assert settings.telemetry == {"exporter": "console"}  # a string names the exporter
    assert settings.source_of("telemetry.exporter") == "command line -o telemetry=console"


@pytest.mark.parametrize(("raw", "value"), [
    ("off", False), ("0", False), ("No", False), ("false", False), ("on", {}), ("1", {}),
    ("true", {}), ("console", {"exporter": "console"}),
    ('{exporter = "console", checkpoint_path = "t"}',
     {"exporter": "console", "checkpoint_path": "t"}),
])
def test_the_telemetry_variable_takes_switch_words_or_a_toml_value(
        raw: str, value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_TELEMETRY", raw)
    assert load().telemetry == value


def test_telemetry_unset_is_none_and_true_is_an_empty_table(project: Path) -> None:
    assert load().telemetry is None
    write(project / "asyncflow.toml", "telemetry = true\n")
    assert load().telemetry == {}
