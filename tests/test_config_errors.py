"""Issue 4, point 2: bad configuration gets one precise error naming the file, the key, the
expected type or the variable, never a traceback from deep inside.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _probe import write

from asyncflow import BackendOptionError, ConfigError, UnknownBackendError, WorkflowEngine
from asyncflow.config import load

pytestmark = pytest.mark.usefixtures("probe_plugin", "project")


def place(where: str, text: str, project: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path | None]:
    """Put ``text`` in the source ``where``; returns the file and the config= argument."""
    if where == "user":
        return write(tmp_path / "xdg" / "asyncflow" / "config.toml", text), None
    if where == "pyproject":
        return write(project / "pyproject.toml", "[tool.asyncflow]\n" + text), None
    if where == "cwd":
        return write(project / "asyncflow.toml", text), None
    if where == "env_file":
        path = write(tmp_path / "named.toml", text)
        monkeypatch.setenv("ASYNCFLOW_CONFIG", str(path))
        return path, None
    path = write(tmp_path / "given.toml", text)
    return path, path


SOURCES = ["user", "pyproject", "cwd", "env_file", "create"]


# -- TOML syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", SOURCES)
def test_syntax_error_names_file_and_line(where: str, project: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, given = place(where, 'backend = "noop"\n\n[backends.probe]\nworkers = = 2\n', project,
                        tmp_path, monkeypatch)
    line = 5 if where == "pyproject" else 4  # the [tool.asyncflow] header adds a line
    with pytest.raises(ConfigError) as raised:
        load(given)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}:")
    assert "invalid TOML" in message
    assert raised.value.__suppress_context__  # not chained to tomllib's internals


def test_syntax_error_at_the_end_of_the_file(project: Path) -> None:
    path = write(project / "asyncflow.toml", 'backend = "noop"\n[backends.probe]\ntags = [\n')
    with pytest.raises(ConfigError, match=rf"^{path}:4:1: invalid TOML: .* at the end of the"):
        load()


def test_file_that_is_not_utf8(project: Path) -> None:
    path = project / "asyncflow.toml"
    path.write_bytes(b'backend = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{path}: not UTF-8"):
        load()


# -- the schema ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", SOURCES)
def test_unknown_key_suggests_the_closest(where: str, project: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, given = place(where, 'backnd = "noop"\n', project, tmp_path, monkeypatch)
    prefix = "tool.asyncflow." if where == "pyproject" else ""
    with pytest.raises(ConfigError) as raised:
        load(given)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert f"unknown key '{prefix}backnd'" in message
    assert f"Did you mean '{prefix}backend'?" in message


def test_unknown_key_far_from_any_lists_the_known_ones(project: Path) -> None:
    write(project / "asyncflow.toml", "[logging]\nlevel = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'logging'\. Known keys: backend, "
                                          "backends") as raised:
        load()
    assert "Did you mean" not in str(raised.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("backend = 3\n", "backend must be a backend name or a list of names (e.g. backend = "
                      "\"dask\" or backend = [\"dask\", \"concurrent\"]), not an integer (3)"),
    ('backend = ["probe", 2]\n', "backend must be a backend name or a list of names"),
    ("backend = []\n", "backend = [] names no backend"),
    ('backend = ""\n', "backend must be a backend name or a list of names"),
    ("backends = 3\n", "backends must be tables of backend options, [backends.<name>], not "
                       "an integer (3)"),
    ("[backends]\nprobe = 3\n", "backends.probe must be a table of the 'probe' backend's "
                                "options ([backends.probe] with key = value lines), not an "
                                "integer (3)"),
])
def test_wrong_type_names_key_and_expected_type(text: str, fragment: str,
                                                project: Path) -> None:
    path = write(project / "asyncflow.toml", text)
    with pytest.raises(ConfigError) as raised:
        load()
    assert str(raised.value).startswith(f"{path}: ")
    assert fragment in str(raised.value)


def test_tool_asyncflow_that_is_not_a_table(project: Path) -> None:
    path = write(project / "pyproject.toml", "[tool]\nasyncflow = 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: tool.asyncflow must be a table"):
        load()


# -- backend options -----------------------------------------------------------------------


@pytest.mark.parametrize(("line", "fragment"), [
    ('workers = "three"', "backends.probe.workers must be int (an option of "
                          "ProbeExecutionBackend), not str 'three'"),
    ("workers = true", "backends.probe.workers must be int"),
    ('mode = "medium"', "backends.probe.mode must be Literal['fast', 'slow']"),
    ("tags = [1, 2]", "backends.probe.tags must be list[str] | None"),
    ("ratio = [1.0]", "backends.probe.ratio must be float"),
])
async def test_option_of_the_wrong_type(line: str, fragment: str, project: Path) -> None:
    path = write(project / "asyncflow.toml", f'backend = "probe"\n[backends.probe]\n{line}\n')
    with pytest.raises(BackendOptionError) as raised:
        await WorkflowEngine.create()
    assert str(raised.value).startswith(f"{path}: ")
    assert fragment in str(raised.value)


@pytest.mark.parametrize("where", ["cwd", "env_file", "create"])
async def test_a_value_the_backend_refuses_names_the_file_and_the_key(
        where: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The constructor's own check (max_workers >= 1) cannot name where the value came from.
    path, given = place(where, "[backends.concurrent]\nmax_workers = 0\n", project, tmp_path,
                        monkeypatch)
    with pytest.raises(ConfigError) as raised:
        await WorkflowEngine.create(config=given)
    assert str(raised.value) == (
        f"{path}: backends.concurrent.max_workers = 0: ConcurrentExecutionBackend: max_workers "
        "must be a whole number >= 1, not 0")
    assert raised.value.__suppress_context__


async def test_option_the_backend_does_not_take(project: Path) -> None:
    path = write(project / "asyncflow.toml", 'backend = "probe"\n[backends.probe]\nworker = 2\n')
    with pytest.raises(TypeError) as raised:  # a BackendOptionError is a TypeError too
        await WorkflowEngine.create()
    assert isinstance(raised.value, ConfigError)
    assert str(raised.value) == (
        f"backend 'probe' (ProbeExecutionBackend) does not accept the option 'worker' (did "
        f"you mean 'workers'?) from {path}; it accepts: workers, label, ratio, mode, tags")


async def test_option_given_to_create_that_the_backend_does_not_take() -> None:
    with pytest.raises(TypeError, match=r"^backend 'probe' \(ProbeExecutionBackend\) does not "
                                        r"accept the option 'colour'; it accepts: workers"):
        await WorkflowEngine.create(backend="probe", colour="red")


async def test_option_variable_of_the_wrong_type_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__PROBE__WORKERS", "many")
    with pytest.raises(BackendOptionError, match=r"^environment variable ASYNCFLOW_BACKENDS__"
                                                 r"PROBE__WORKERS: backends\.probe\.workers "
                                                 r"must be int"):
        await WorkflowEngine.create(backend="probe")


# -- backend names -------------------------------------------------------------------------


async def test_unknown_backend_lists_the_installed_ones(project: Path) -> None:
    path = write(project / "asyncflow.toml", 'backend = "prob"\n')
    with pytest.raises(UnknownBackendError) as raised:
        await WorkflowEngine.create()
    message = str(raised.value)
    assert message.startswith(f"backend (from {path}): no asyncflow backend named 'prob'.")
    assert "noop" in message and "probe" in message
    assert "Did you mean 'probe'?" in message


async def test_unknown_backend_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BACKEND", "probe,nope")
    with pytest.raises(UnknownBackendError, match=r"^backend \(from environment variable "
                                                  r"ASYNCFLOW_BACKEND\): no asyncflow backend "
                                                  r"named 'nope'"):
        await WorkflowEngine.create()


async def test_backend_listed_twice(project: Path) -> None:
    path = write(project / "asyncflow.toml", 'backend = ["probe", "noop", "dry_run"]\n')
    with pytest.raises(ConfigError, match=rf"^backend \(from {path}\): backend 'noop' is listed "
                                          "twice"):
        await WorkflowEngine.create()


# -- environment variables and named files -------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "fragment"), [
    ("ASYNCFLOW_BACKENDS__PROBE__TAGS", "[1,", "'[1,' is not a valid TOML value"),
    ("ASYNCFLOW_BACKENDS__PROBE__LABEL", '"unterminated', "is not a valid TOML value"),
    ("ASYNCFLOW_BACKENDS__PROBE__LABEL", "1\nworkers = 2", "is not a single TOML value"),
    ("ASYNCFLOW_BACKENDS__PROBE", "2", "cannot tell which backend option it sets"),
    ("ASYNCFLOW_BACKENDS_PROBE_WORKERS", "2", "ASYNCFLOW_BACKENDS__<BACKEND>__<OPTION>"),
    ("ASYNCFLOW_BACKENDS__PROBE__", "2", "cannot tell which backend option it sets"),
    ("ASYNCFLOW_BACKEND", " , ", "names no backend"),
])
def test_variable_that_does_not_parse_is_named(variable: str, value: str, fragment: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load()
    assert str(raised.value).startswith(f"environment variable {variable}")
    assert fragment in str(raised.value)


def test_asyncflow_config_naming_a_missing_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("ASYNCFLOW_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=f"^environment variable ASYNCFLOW_CONFIG names the "
                                          f"configuration file {missing}, which does not exist"):
        load()


async def test_create_config_naming_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^WorkflowEngine.create\(config=...\) names the "
                                          rf"configuration file {tmp_path}/nowhere.toml"):
        await WorkflowEngine.create(config=tmp_path / "nowhere.toml")
