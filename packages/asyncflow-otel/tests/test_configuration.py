"""Telemetry from the configuration: ``telemetry`` in asyncflow.toml, its environment variable,
``-o`` on the command line and ``create(telemetry=...)``, recorded by the real SDK.

A ``module:callable`` exporter in the project folder returns an ``InMemorySpanExporter`` that
the test reads; subprocesses cover the command line and OpenTelemetry's global providers,
which can be set once per process.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncflow import ConfigError, WorkflowEngine
from asyncflow.config import load

pytestmark = pytest.mark.timeout(60)

EXPORTER_MODULE = """
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

made = []

def in_memory():
    made.append(InMemorySpanExporter())
    return made[-1]

def not_an_exporter():
    return "spans, please"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as the cwd, importable, with no ASYNCFLOW_* variables, a private user
    config folder, and a repository root above it so the pyproject search stays inside."""
    for variable in list(os.environ):
        if variable.startswith(("ASYNCFLOW_", "OTEL_")):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / ".git").mkdir()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "spans_here.py").write_text(EXPORTER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "spans_here", raising=False)
    monkeypatch.chdir(folder)
    return folder


def exported() -> list[InMemorySpanExporter]:
    """The exporters ``spans_here:in_memory`` made in this test."""
    made: list[InMemorySpanExporter] = importlib.import_module("spans_here").made
    return made


def names(exporter: InMemorySpanExporter) -> list[str]:
    return sorted(span.name for span in exporter.get_finished_spans())


async def one_task(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def one() -> int:
        return 1

    assert await one() == 1


# -- in this process -----------------------------------------------------------------------


async def test_the_file_turns_it_on_with_a_callable_exporter_and_checkpoints(
        project: Path) -> None:
    (project / "asyncflow.toml").write_text(
        '[telemetry]\nexporter = "spans_here:in_memory"\ncheckpoint_path = "t/summary.jsonl"\n')
    async with WorkflowEngine.create("concurrent", work_dir=project) as flow:
        telemetry = await flow.start_telemetry()  # upstream's call: the configured object
        await one_task(flow)
        assert telemetry.summary()["tasks"]["DONE"] == 1
    (exporter,) = exported()
    assert names(exporter) == ["asyncflow session", "function one"]
    (line,) = (project / "t" / "summary.jsonl").read_text().splitlines()
    assert json.loads(line)["session_id"] == flow.uid


async def test_every_engine_gets_its_own(project: Path) -> None:
    (project / "asyncflow.toml").write_text('telemetry = "spans_here:in_memory"\n')
    for _ in range(2):
        async with WorkflowEngine.create("concurrent", work_dir=project) as flow:
            await one_task(flow)
    assert [names(e) for e in exported()] == [["asyncflow session", "function one"]] * 2


async def test_the_standard_variable_names_the_service(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "asyncflow.toml").write_text('telemetry = "spans_here:in_memory"\n')
    for service in (None, "campaign"):
        if service is not None:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service)
        async with WorkflowEngine.create("concurrent", work_dir=project) as flow:
            await one_task(flow)
    default, named = (e.get_finished_spans()[0].resource.attributes for e in exported())
    assert default["service.name"] == "asyncflow"
    assert named["service.name"] == "campaign"
    assert named["asyncflow.session_id"] == flow.uid


async def test_create_argument_wins_over_the_file(project: Path) -> None:
    (project / "asyncflow.toml").write_text('telemetry = "spans_here:in_memory"\n')
    async with WorkflowEngine.create("concurrent", work_dir=project, telemetry=False) as flow:
        await one_task(flow)
        with pytest.raises(RuntimeError, match=r"telemetry = false, from "
                                               r"WorkflowEngine\.create\(telemetry=\.\.\.\)"):
            await flow.start_telemetry()
    assert exported() == []


async def test_the_environment_variable_names_an_exporter(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_TELEMETRY", "spans_here:in_memory")
    async with WorkflowEngine.create("concurrent", work_dir=project) as flow:
        await one_task(flow)
    (exporter,) = exported()
    assert "function one" in names(exporter)


async def test_a_file_off_and_the_variable_on(project: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "asyncflow.toml").write_text("telemetry = false\n")
    monkeypatch.setenv("ASYNCFLOW_TELEMETRY__EXPORTER", "spans_here:in_memory")
    settings = load()
    assert settings.telemetry == {"exporter": "spans_here:in_memory"}
    assert settings.source_of("telemetry") == ("environment variable "
                                               "ASYNCFLOW_TELEMETRY__EXPORTER")
    async with WorkflowEngine.create("concurrent", work_dir=project) as flow:
        await one_task(flow)
    assert len(exported()) == 1


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "fragment"), [
    ("telemetry = 3\n", "telemetry must be true, false, an exporter name, or a table "
                        "[telemetry] (asyncflow-otel), not an integer (3)"),
    ('[telemetry]\nexportr = "console"\n', "unknown key 'telemetry.exportr'. Did you mean "
                                           "'telemetry.exporter'?"),
    ('[telemetry]\nexporter = ""\n', "telemetry.exporter must be"),
    ('[telemetry]\ncheckpoint_path = "a"\ncheckpoint_interval = 0\n',
     "telemetry.checkpoint_interval must be seconds between checkpoints (a positive number), "
     "not an integer (0)"),
    ('[telemetry]\ncheckpoint_path = "a"\ncheckpoint_interval = true\n',
     "telemetry.checkpoint_interval must be"),
    ("[telemetry]\ncheckpoint_interval = 5\n",
     "telemetry.checkpoint_interval needs telemetry.checkpoint_path"),
])
async def test_a_bad_value_names_the_file_and_the_key(project: Path, text: str,
                                                      fragment: str) -> None:
    path = project / "asyncflow.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        await WorkflowEngine.create("concurrent", work_dir=project)
    assert str(raised.value).startswith(f"{path}: ")
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("exporter", "fragment"), [
    ("nope", "telemetry.exporter = 'nope' names no installed OpenTelemetry span exporter "
             "(installed: console"),
    ("spans_here:not_an_exporter", "returned str, not an OpenTelemetry SpanExporter"),
    ("spans_here:missing", "module 'spans_here' has no callable 'missing'"),
    ("no_such_module:factory", "there is no module 'no_such_module' to import"),
])
async def test_an_exporter_that_cannot_be_made_is_a_config_error(
        project: Path, exporter: str, fragment: str) -> None:
    path = project / "asyncflow.toml"
    path.write_text(f'[telemetry]\nexporter = "{exporter}"\n')
    with pytest.raises(ConfigError) as raised:
        await WorkflowEngine.create("concurrent", work_dir=project)
    assert str(raised.value).startswith(f"{path}: telemetry.exporter = {exporter!r}")
    assert fragment in str(raised.value)


async def test_otlp_without_its_package_says_what_to_install(project: Path) -> None:
    try:
        importlib.import_module("opentelemetry.exporter.otlp.proto.grpc")
    except ImportError:
        pass
    else:
        pytest.skip("opentelemetry-exporter-otlp is installed here")
    (project / "asyncflow.toml").write_text('telemetry = "otlp"\n')
    with pytest.raises(ImportError, match="pip install opentelemetry-exporter-otlp"):
        await WorkflowEngine.create("concurrent", work_dir=project)


def test_a_bad_variable_names_the_variable(project: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_TELEMETRY__INTERVAL", "5")
    with pytest.raises(ConfigError, match=r"^environment variable ASYNCFLOW_TELEMETRY__INTERVAL: "
                                          r"unknown key 'telemetry\.interval'"):
        load()


# -- subprocesses: the command line, global providers, the plugin missing ------------------

SCRIPT = """
import asyncio
from asyncflow import WorkflowEngine

async def main():
    async with WorkflowEngine.create() as flow:
        @flow.function_task
        async def one():
            return 1
        print("result", await one())

asyncio.run(main())
"""

# The application configures the global SDK provider, as with opentelemetry-instrument.
GLOBAL_SDK = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
""" + SCRIPT.replace("print(\"result\", await one())", """await one()
        try:
            await flow.start_telemetry()
        except RuntimeError as exc:
            print(exc)""") + """
print(sorted(span.name for span in exporter.get_finished_spans()))
"""


def asyncflow(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asyncflow", *args], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env})


def test_asyncflow_run_with_the_file_prints_spans_with_the_console_exporter(
        project: Path) -> None:
    (project / "asyncflow.toml").write_text(
        'backend = "concurrent"\n\n[telemetry]\nexporter = "console"\n'
        'checkpoint_path = "telemetry.jsonl"\n')
    (project / "script.py").write_text(SCRIPT)
    done = asyncflow(project, "run", "script.py", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("result 1\n")
    assert '"name": "function one"' in done.stdout
    assert '"name": "asyncflow session"' in done.stdout
    assert '"name": "asyncflow.tasks"' in done.stdout  # the console metric exporter's
    (line,) = (project / "telemetry.jsonl").read_text().splitlines()
    assert json.loads(line)["tasks"]["DONE"] == 1


def test_false_turns_it_off_even_with_a_global_provider(project: Path) -> None:
    (project / "script.py").write_text(GLOBAL_SDK)
    done = asyncflow(project, "run", "script.py", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "['asyncflow session', 'function one']"
    path = project / "asyncflow.toml"
    path.write_text("telemetry = false\n")
    done = asyncflow(project, "run", "script.py", "--no-progress")
    assert done.returncode == 0, done.stderr
    refusal, spans = done.stdout.splitlines()
    assert refusal.endswith(f": telemetry = false, from {path}")
    assert spans == "[]"


def test_the_command_line_beats_the_environment_variable(project: Path) -> None:
    (project / "script.py").write_text(GLOBAL_SDK)
    done = asyncflow(project, "run", "script.py", "--no-progress", "-o", "telemetry=true",
                     ASYNCFLOW_TELEMETRY="off")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "['asyncflow session', 'function one']"
    done = asyncflow(project, "run", "script.py", "--no-progress", ASYNCFLOW_TELEMETRY="off")
    assert done.stdout.splitlines()[-1] == "[]"


def test_asyncflow_config_shows_it_and_where_it_came_from(project: Path) -> None:
    path = project / "asyncflow.toml"
    path.write_text('backend = "concurrent"\n\n[telemetry]\nexporter = "console"\n')
    done = asyncflow(project, "config", "-o", "telemetry.checkpoint_path=t.jsonl")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-4:] == [
        "",
        f"[telemetry]  # {path}",
        f'exporter = "console"  # {path}',
        'checkpoint_path = "t.jsonl"  # command line -o telemetry.checkpoint_path=t.jsonl']
    done = asyncflow(project, "config", "--json", ASYNCFLOW_TELEMETRY="off")
    data = json.loads(done.stdout)
    assert data["telemetry"] is False
    assert data["sources"]["telemetry"] == "environment variable ASYNCFLOW_TELEMETRY"
    done = asyncflow(project, "config", "-o", "telemetry=false")
    assert "telemetry = false  # command line -o telemetry=false" in done.stdout.splitlines()


@pytest.mark.parametrize("command", [["config"], ["run", "script.py"]])
def test_telemetry_without_the_plugin_names_the_pip_install(project: Path,
                                                           command: list[str]) -> None:
    path = project / "asyncflow.toml"
    path.write_text('backend = "noop"\ntelemetry = true\n')
    (project / "script.py").write_text(SCRIPT)
    done = asyncflow(project, *command, ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD="1")
    assert done.returncode == 2
    assert (f"{path}: telemetry needs the asyncflow-otel plugin, which is not installed: "
            "pip install asyncflow-otel") in done.stderr
    path.write_text('backend = "noop"\ntelemetry = false\n')  # off needs nothing
    done = asyncflow(project, *command, ASYNCFLOW_DISABLE_PLUGIN_AUTOLOAD="1")
    assert done.returncode == 0, done.stderr


def test_asyncflow_config_checks_the_exporter_as_create_would(project: Path) -> None:
    path = project / "asyncflow.toml"
    path.write_text('backend = "concurrent"\ntelemetry = "nope"\n')
    done = asyncflow(project, "config")
    assert done.returncode == 2
    assert f"{path}: telemetry.exporter = 'nope' names no installed" in done.stderr
    path.write_text('backend = "concurrent"\ntelemetry = "spans_here:in_memory"\n')
    done = asyncflow(project, "config")  # found, not called: config makes no exporter
    assert done.returncode == 0, done.stderr
