"""Issue 4, point 3: the ``asyncflow`` command, run in a subprocess as a user runs it, in a
project folder with the ``probe`` plugin installed beside it (see ``_probe.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from _probe import clean_environment, install, run_asyncflow

import asyncflow

WORKFLOW = """\
import asyncio, json, sys
from asyncflow import WorkflowEngine

async def main():
    flow = await WorkflowEngine.create({backend})
    try:
        options = await flow.function_task(len)("x")
        print(json.dumps({{"backend": flow.default_backend, "options": options,
                          "argv": sys.argv[1:], "name": __name__}}))
    finally:
        await flow.shutdown()

asyncio.run(main())
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # the pyproject search stays inside tmp_path
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "workflow.py").write_text(WORKFLOW.format(backend=""))
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_environment(tmp_path, install(tmp_path / "site"))


def cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_asyncflow(*args, cwd=project, env=env)


def ran(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """What the workflow script printed (its last line of JSON)."""
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the command itself --------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["backends", "--help"], ["config", "--help"],
                                  ["run", "--help"]])
def test_help_everywhere(args: list[str], project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: asyncflow {args[0] if len(args) > 1 else ''}".rstrip())


def test_no_command_is_a_usage_error(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env)
    assert done.returncode == 2
    assert "usage: asyncflow" in done.stderr and "backends" in done.stderr


def test_unknown_command_is_a_usage_error(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, "frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr


def test_version(project: Path, env: dict[str, str]) -> None:
    assert cli(project, env, "--version").stdout == f"asyncflow {asyncflow.__version__}\n"


def test_python_dash_m_asyncflow(project: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "asyncflow", "backends", "--json"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "probe" in {row["name"] for row in json.loads(done.stdout)}


# -- asyncflow backends --------------------------------------------------------------------


def test_backends_table(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, "backends")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "ALIASES", "CLASS", "DISTRIBUTION", "VERSION", "LOADS",
                              "CAPABILITIES"]
    by_name = {row.split()[0]: row.split(maxsplit=6) for row in rows}
    assert by_name["probe"] == ["probe", "-", "asyncflow_probe:ProbeExecutionBackend",
                                "asyncflow-probe", "0.1.0", "yes", "function_tasks"]
    assert by_name["noop"][:6] == ["noop", "dry_run",
                                   "asyncflow._plugins.noop:NoopExecutionBackend", "asyncflow-core",
                                   asyncflow.__version__, "yes"]
    assert "executable_tasks" in by_name["noop"][6]


def test_backends_json(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, "backends", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["probe"] == {
        "name": "probe", "aliases": [], "class": "asyncflow_probe:ProbeExecutionBackend",
        "distribution": "asyncflow-probe", "version": "0.1.0",
        "capabilities": ["function_tasks"], "loads": True, "error": None}


def test_backends_shows_a_plugin_that_does_not_load(tmp_path: Path, project: Path,
                                                    env: dict[str, str]) -> None:
    install(tmp_path / "site", module="asyncflow_broken", dist="asyncflow-broken",
            entry="broken", source='raise ImportError("asyncflow-broken needs libfoo")\n')
    table = cli(project, env, "backends")
    assert table.returncode == 1
    row = next(line for line in table.stdout.splitlines() if line.startswith("broken "))
    assert "no (see below)" in row
    error = next(line for line in table.stdout.splitlines() if line.startswith("broken: "))
    assert "asyncflow-broken 0.1.0" in error  # which distribution
    assert "ImportError: asyncflow-broken needs libfoo" in error  # and why
    rows = {row["name"]: row for row in json.loads(cli(project, env, "backends", "--json").stdout)}
    assert rows["broken"]["loads"] is False
    assert "needs libfoo" in rows["broken"]["error"]
    assert rows["probe"]["loads"] is True  # one broken plugin leaves the others alone


# -- asyncflow config ----------------------------------------------------------------------


def test_config_prints_values_with_their_sources(project: Path, env: dict[str, str]) -> None:
    local = project / "asyncflow.toml"
    local.write_text('backend = "probe"\n[backends.probe]\nworkers = 2\ntags = ["a b", "c"]\n')
    env["ASYNCFLOW_BACKENDS__PROBE__LABEL"] = "from env"
    done = cli(project, env, "config")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"#   {local}" in lines
    assert f'backend = ["probe"]  # {local}' in lines
    assert f"workers = 2  # {local}" in lines
    assert f'tags = ["a b", "c"]  # {local}' in lines
    assert 'label = "from env"  # environment variable ASYNCFLOW_BACKENDS__PROBE__LABEL' in lines
    assert tomllib.loads(done.stdout) == {  # what it prints is TOML the user can copy
        "backend": ["probe"], "backends": {"probe": {"workers": 2, "tags": ["a b", "c"],
                                                     "label": "from env"}}}


def test_config_json(project: Path, env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text('[backends.probe]\nworkers = 2\n')
    done = cli(project, env, "config", "--json", "--backend", "probe", "-o", "label=cli")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["backend"] == ["probe"]
    assert data["backends"] == {"probe": {"workers": 2, "label": "cli"}}
    assert data["sources"]["backend"] == "command line --backend probe"
    assert data["sources"]["backends.probe.label"] == "command line -o label=cli"
    assert data["files"] == [str(project / "asyncflow.toml")]
    assert data["problems"] == []


def test_config_marks_backends_that_are_not_installed(project: Path,
                                                      env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text('backend = "probe"\n[backends.hpc_site]\ncores = 4\n')
    done = cli(project, env, "config")
    assert done.returncode == 0, done.stderr
    assert "[backends.hpc_site]  # not installed" in done.stdout.splitlines()


@pytest.mark.skipif("concurrent" not in asyncflow.registry(),
                    reason="asyncflow-concurrent is not installed here")
def test_config_shows_the_built_in_default(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, "config")
    assert done.returncode == 0, done.stderr
    assert 'backend = ["concurrent"]  # built-in default' in done.stdout.splitlines()


@pytest.mark.parametrize(("text", "fragment"), [
    ('backend = "probe"\n[backends.probe\n', "asyncflow.toml:2:"),
    ('backnd = "probe"\n', "unknown key 'backnd'. Did you mean 'backend'?"),
    ('backend = "prob"\n', "no asyncflow backend named 'prob'"),
    ('backend = "probe"\n[backends.probe]\nworker = 3\n', "does not accept the option 'worker'"),
    ('backend = "probe"\n[backends.probe]\nworkers = "3"\n', "backends.probe.workers must be "
                                                             "int"),
])
def test_config_reports_bad_configuration(text: str, fragment: str, project: Path,
                                          env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text(text)
    done = cli(project, env, "config")
    assert done.returncode == 2
    assert done.stderr.startswith("asyncflow: error: ")
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_config_with_nothing_configured_and_no_default(project: Path,
                                                       env: dict[str, str]) -> None:
    env["ASYNCFLOW_DISABLE_PLUGINS"] = "concurrent"
    done = cli(project, env, "config")
    assert done.returncode == 2
    assert "no backend is configured" in done.stderr


# -- asyncflow run -------------------------------------------------------------------------


def test_run_uses_the_configuration(project: Path, env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text('backend = "probe"\n[backends.probe]\nworkers = 2\n')
    result = ran(cli(project, env, "run", "workflow.py"))
    assert result["backend"] == "probe"
    assert result["options"]["workers"] == 2  # type: ignore[index]
    assert result["name"] == "__main__"


def test_run_with_backend_and_options_from_the_command_line(project: Path,
                                                            env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text('backend = "noop"\n[backends.probe]\nworkers = 2\n')
    env["ASYNCFLOW_BACKEND"] = "noop"
    result = ran(cli(project, env, "run", "workflow.py", "--backend", "probe", "-o",
                     "label=cli", "-o", "backends.probe.tags=['x']", "--", "--steps", "3"))
    assert result["backend"] == "probe"
    assert result["options"] == {"workers": 2, "label": "cli", "ratio": 1.0, "mode": "fast",
                                 "tags": ["x"]}
    assert result["argv"] == ["--steps", "3"]


def test_run_with_a_config_file(tmp_path: Path, project: Path, env: dict[str, str]) -> None:
    cluster = tmp_path / "cluster.toml"
    cluster.write_text('backend = "probe"\n[backends.probe]\nmode = "slow"\n')
    env["ASYNCFLOW_BACKEND"] = "noop"  # --config sits above the environment
    result = ran(cli(project, env, "run", "workflow.py", "--config", str(cluster)))
    assert (result["backend"], result["options"]["mode"]) == ("probe", "slow")  # type: ignore[index]


def test_run_an_explicit_backend_in_the_script_wins(project: Path, env: dict[str, str]) -> None:
    (project / "explicit.py").write_text(WORKFLOW.format(backend='backend="noop"'))
    done = cli(project, env, "run", "explicit.py", "--backend", "probe")
    assert ran(done)["backend"] == "noop"
    assert "command line --backend probe does not apply to this engine" in done.stderr


def test_run_a_failing_workflow_exits_1_with_the_scripts_traceback(
        project: Path, env: dict[str, str]) -> None:
    (project / "failing.py").write_text(textwrap.dedent("""\
        import asyncio
        from asyncflow import WorkflowEngine

        async def main():
            flow = await WorkflowEngine.create(backend="noop")
            try:
                raise ValueError("bad input 42")
            finally:
                await flow.shutdown()

        asyncio.run(main())
        """))
    done = cli(project, env, "run", "failing.py")
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):\n  File "
                                  f'"{project / "failing.py"}"')
    assert "ValueError: bad input 42" in done.stderr
    assert "runpy" not in done.stderr and "asyncflow/cli.py" not in done.stderr
    assert done.stderr.rstrip().endswith("asyncflow: the workflow failing.py failed: "
                                         "ValueError: bad input 42")


@pytest.mark.parametrize(("code", "status", "message"), [
    ("sys.exit(3)", 3, ""), ("sys.exit()", 0, ""), ("sys.exit('stopped early')", 1,
                                                     "stopped early\n")])
def test_run_keeps_the_scripts_exit_status(code: str, status: int, message: str, project: Path,
                                           env: dict[str, str]) -> None:
    (project / "exits.py").write_text(f"import sys\n{code}\n")
    done = cli(project, env, "run", "exits.py")
    assert (done.returncode, done.stderr) == (status, message)


def test_run_with_bad_configuration_exits_2_without_a_traceback(project: Path,
                                                                env: dict[str, str]) -> None:
    (project / "asyncflow.toml").write_text('backend = "probe"\n[backends.probe]\nworker = 3\n')
    done = cli(project, env, "run", "workflow.py")
    assert done.returncode == 2
    assert done.stderr.startswith("asyncflow: error: backend 'probe' (ProbeExecutionBackend) "
                                  "does not accept the option 'worker'")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (["run", "workflow.py", "--backend", "prob"], "--backend: no asyncflow backend named 'prob'. "
                                                  "Installed: "),
    (["run", "missing.py"], "no such workflow script: missing.py"),
    (["run", "workflow.py", "--config", "nowhere.toml"], "--config names the configuration "
                                                         "file"),
    (["run", "workflow.py", "-o", "workers"], "-o workers: expected KEY=VALUE"),
    (["run", "workflow.py", "-o", "nonsense.key=1"], "unknown key 'nonsense.key'"),
    (["config", "--", "x"], "config takes no arguments after --"),
])
def test_usage_errors_exit_2(args: list[str], fragment: str, project: Path,
                             env: dict[str, str]) -> None:
    done = cli(project, env, *args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif("concurrent" not in asyncflow.registry(),
                    reason="asyncflow-concurrent is not installed here")
def test_run_a_real_workflow_on_concurrent(project: Path, env: dict[str, str]) -> None:
    (project / "squares.py").write_text(textwrap.dedent("""\
        import asyncio
        from asyncflow import WorkflowEngine

        async def main():
            flow = await WorkflowEngine.create()
            try:
                square = flow.function_task(lambda x: x * x)
                print(flow.default_backend, sum(await asyncio.gather(*map(square, range(10)))))
            finally:
                await flow.shutdown()

        asyncio.run(main())
        """))
    done = cli(project, env, "run", "squares.py", "--backend", "concurrent")
    assert (done.returncode, done.stdout) == (0, "concurrent 285\n"), done.stderr


@pytest.mark.skipif("concurrent" not in asyncflow.registry(),
                    reason="asyncflow-concurrent is not installed here")
def test_bare_option_goes_to_the_built_in_default(project: Path, env: dict[str, str]) -> None:
    done = cli(project, env, "config", "--json", "-o", "max_workers=2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backends"] == {"concurrent": {"max_workers": 2}}


def test_bare_option_without_any_backend_asks_for_one(project: Path,
                                                      env: dict[str, str]) -> None:
    env["ASYNCFLOW_DISABLE_PLUGINS"] = "concurrent"
    done = cli(project, env, "config", "-o", "workers=2")
    assert done.returncode == 2
    assert "a bare option name needs a backend (--backend NAME)" in done.stderr
