"""The parts that need no pilot: options, task descriptions, staging, the wire format."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from asyncflow import InputFile, OutputFile, TaskKind, TaskSpec
from asyncflow.errors import BackendError
from asyncflow_radical import RadicalExecutionBackend, _describe, _environment, _remote, _staging
from asyncflow_radical._pilot import import_radical_pilot

rp = import_radical_pilot()

FIELDS = frozenset(rp.TaskDescription()._schema)


def command(cmd: tuple[str, ...] | str, **fields: object) -> TaskSpec:
    return TaskSpec("task.000001", "step", TaskKind.EXECUTABLE, command=cmd,
                    shell=isinstance(cmd, str), **fields)  # type: ignore[arg-type]


def test_constants_match_radical_pilot() -> None:
    assert (_describe.MODE_EXECUTABLE, _describe.MODE_FUNCTION) == (rp.TASK_EXECUTABLE,
                                                                    rp.TASK_FUNCTION)
    assert (_staging.LINK, _staging.TRANSFER) == (rp.LINK, rp.TRANSFER)


def test_pilot_options_map_to_a_pilot_description() -> None:
    backend = RadicalExecutionBackend(resource="site.machine", cores=64, gpus=4, runtime=30,
                                      queue="debug", project="abc123", access_schema="batch",
                                      sandbox="/scratch/me", pilot={"cleanup": True})
    assert backend.pilot_description == {
        "resource": "site.machine", "cores": 64, "gpus": 4, "runtime": 30, "queue": "debug",
        "project": "abc123", "access_schema": "batch", "sandbox": "/scratch/me",
        "cleanup": True, "exit_on_error": False}
    assert set(backend.pilot_description) <= set(rp.PilotDescription()._schema)
    assert RadicalExecutionBackend().pilot_description["nodes"] == 1  # one node by default


@pytest.mark.parametrize(("options", "message"), [
    ({"cores": -1}, "cores"), ({"runtime": 0}, "runtime"),
    ({"raptor_cores_per_worker": 0}, "raptor_cores_per_worker"),
    ({"pilot": {"exit_on_error": True}}, "exit_on_error is always False"),
])
def test_bad_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RadicalExecutionBackend(**options)  # type: ignore[arg-type]


def test_a_command_is_described_with_its_resources() -> None:
    spec = command(("mpirun-app", "--size", "3"), env={"A": "1"}, timeout=5.0,
                   description={"ranks": 4, "cores_per_rank": 2, "gpus_per_rank": 1,
                                "pre_exec": ["module load x"]})
    td = _describe.describe(spec, FIELDS, uid="af0.task.000001")
    assert td["executable"] == "mpirun-app" and td["arguments"] == ["--size", "3"]
    assert (td["ranks"], td["cores_per_rank"], td["gpus_per_rank"]) == (4, 2, 1)
    assert td["pre_exec"] == ["module load x"] and td["timeout"] == 5.0
    assert td["environment"] == {"A": "1"} and td["mode"] == rp.TASK_EXECUTABLE
    rp.TaskDescription(td).verify()


def test_shell_strings_and_dollars_travel_through_the_environment() -> None:
    td = _describe.describe(command("echo $HOME | wc -c"), FIELDS, uid="u")
    assert td["executable"] == "/bin/sh"
    assert td["arguments"] == ["-c", "${ASYNCFLOW_ARG_2}"]
    assert td["environment"]["ASYNCFLOW_ARG_2"] == "echo \\$HOME | wc -c"


def test_description_lists_are_copied_not_shared() -> None:
    shared = ["a=1"]
    td = _describe.describe(command(("true",), cwd="/w", description={"pre_exec": shared}),
                            FIELDS, uid="u")
    assert td["pre_exec"] == ["cd /w", "a=1"] and shared == ["a=1"]


@pytest.mark.parametrize(("description", "message"), [
    ({"no_such_field": 1}, "not a field"), ({"executable": "/bin/x"}, "set by the radical"),
])
def test_bad_task_descriptions_name_task_and_key(description: dict[str, object],
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=f"'step'.*{message}"):
        _describe.describe(command(("true",), description=description), FIELDS, uid="u")


def test_environment_names_must_be_exportable() -> None:
    with pytest.raises(ValueError, match="'BAD-NAME'"):
        _describe.describe(command(("true",), env={"BAD-NAME": "x"}), FIELDS, uid="u")


def test_staging_links_outputs_and_copies_local_inputs(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("here.txt").write_text("x")
    ledger = _staging.FileLedger()
    writer = command(("w",), output_files=(OutputFile("out/a.txt"), OutputFile("/shared/b")))
    ledger.record_outputs(writer, "af0.task.000001")
    reader = command(("r",), cwd="sub",
                     input_files=(InputFile("out/a.txt"), InputFile("here.txt"),
                                  InputFile("/shared/b")))
    assert ledger.input_staging(reader) == [
        {"source": "pilot:///af0.task.000001/out/a.txt", "target": "task:///sub/out/a.txt",
         "action": rp.LINK},
        {"source": str(tmp_path / "here.txt"), "target": "task:///sub/here.txt",
         "action": rp.TRANSFER}]
    with pytest.raises(FileNotFoundError, match=r"'missing\.txt'"):
        ledger.input_staging(command(("r",), input_files=(InputFile("missing.txt"),)))


def test_the_wire_format_keeps_values_and_exceptions() -> None:
    spec = TaskSpec("task.000001", "f", TaskKind.FUNCTION)
    assert _remote.unpack(_remote._encode(("ok", (1, {2}))), spec) == (1, {2})
    error = _remote._encode_error(KeyError("k"))
    with pytest.raises(KeyError) as raised:
        _remote.unpack(error, spec)
    assert isinstance(raised.value.__cause__, _remote.RemoteTraceback)
    with pytest.raises(BackendError, match="cannot be unpickled"):
        _remote.unpack("bm90IGEgcGlja2xl", spec)


def test_worker_pythonpath_holds_our_import_roots_not_the_interpreters() -> None:
    roots = _environment.worker_pythonpath().split(os.pathsep)
    assert str(Path(__file__).parent) in roots  # where this test module imports from
    assert not any(root.startswith(sys.base_prefix + os.sep) for root in roots)


def test_prepare_points_radical_at_this_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIRTUAL_ENV", "RADICAL_DEFAULT_IFACE", "RADICAL_REPORT", "RADICAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RADICAL_PROFILE", "TRUE")  # asked for by the user: kept
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    _environment.prepare("local.localhost")
    assert os.environ["VIRTUAL_ENV"] == sys.prefix  # the tests run in a virtualenv
    assert os.environ["PATH"] == f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"
    assert os.environ["RADICAL_DEFAULT_IFACE"] == "lo"
    assert (os.environ["RADICAL_REPORT"], os.environ["RADICAL_PROFILE"]) == ("FALSE", "TRUE")
    monkeypatch.delenv("RADICAL_DEFAULT_IFACE")
    _environment.prepare("tacc.frontera")  # a remote site: its own network interface
    assert "RADICAL_DEFAULT_IFACE" not in os.environ


def test_a_site_that_would_build_a_fresh_virtualenv_uses_ours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import radical.utils as ru

    user = tmp_path / "user"
    (user / ".radical" / "pilot" / "configs").mkdir(parents=True)
    (user / ".radical" / "pilot" / "configs" / "resource_tacc.json").write_text(
        '{"frontera": {"cores_per_node": 7}}')
    monkeypatch.setenv("RADICAL_CONFIG_USER_DIR", str(user))

    def frontera() -> dict[str, object]:
        return dict(ru.Config("radical.pilot.resource", name="*", expand=False)["tacc"]
                    ["frontera"])

    assert frontera()["virtenv_mode"] == "create"  # as RADICAL-Pilot ships it
    with _environment.own_environment("tacc.frontera"):
        inside = frontera()
    assert (inside["virtenv_mode"], inside["rp_version"]) == ("local", "installed")
    assert inside["cores_per_node"] == 7  # the user's own settings stay
    assert os.environ["RADICAL_CONFIG_USER_DIR"] == str(user)
    assert frontera()["virtenv_mode"] == "create"


SITE = {"resource_manager": "SLURM", "cores_per_node": 2, "default_queue": "debug",
        "default_schema": "local",
        "schemas": {"local": {"job_manager_endpoint": "slurm://localhost/",
                              "filesystem_endpoint": "file://localhost/"}}}


def test_a_site_given_inline_is_known_while_the_session_is_created_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import radical.utils as ru

    monkeypatch.setenv("HOME", str(tmp_path))  # no user configurations at all
    monkeypatch.delenv("RADICAL_CONFIG_USER_DIR", raising=False)
    backend = RadicalExecutionBackend(site=SITE, nodes=2)
    assert backend.resource == "asyncflow.site"

    def known() -> dict[str, object] | None:
        configs = ru.Config("radical.pilot.resource", name="*", expand=False)
        return configs.get("asyncflow", {}).get("site")

    assert known() is None
    with _environment.own_environment(backend.resource, backend.site):
        inside = known()
    assert inside is not None and inside["resource_manager"] == "SLURM"
    assert (inside["virtenv_mode"], inside["rp_version"]) == ("local", "installed")
    assert inside["default_remote_workdir"] == str(tmp_path)  # a local site: our home
    assert known() is None and "RADICAL_CONFIG_USER_DIR" not in os.environ
    assert not (tmp_path / ".radical").exists()



def test_two_sessions_starting_at_once_are_configured_one_after_the_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """own_environment() changes os.environ for the whole process: a second session waits
    until the first is created, and each sees its own site (CI once had two engines gathered
    on Slurm, one of whose sessions never came up)."""
    import radical.utils as ru

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RADICAL_CONFIG_USER_DIR", raising=False)
    first, second = ({**SITE, "description": name} for name in ("first", "second"))
    holding, seen = threading.Event(), []
    release = threading.Event()

    def create(site: dict[str, object]) -> None:
        with _environment.own_environment("asyncflow.site", site):
            configs = ru.Config("radical.pilot.resource", name="*", expand=False)
            seen.append(configs["asyncflow"]["site"]["description"])
            holding.set()
            release.wait(30)  # the session is being created

    one = threading.Thread(target=create, args=(first,))
    one.start()
    assert holding.wait(30)
    two = threading.Thread(target=create, args=(second,))
    two.start()
    two.join(0.5)  # not a timing threshold: it must not get in at all while one is inside
    assert seen == ["first"] and two.is_alive()
    release.set()
    one.join(30)
    two.join(30)
    assert seen == ["first", "second"]
    assert "RADICAL_CONFIG_USER_DIR" not in os.environ

def test_a_site_file_is_read_and_a_bad_one_named(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(SITE))
    backend = RadicalExecutionBackend(resource="lab.cluster", site=str(path))
    assert backend.site == SITE and backend.resource == "lab.cluster"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"site file .*site\.json must hold one JSON object"):
        RadicalExecutionBackend(site=path)
    with pytest.raises(ValueError, match=r"site file .*missing\.json: No such file"):
        RadicalExecutionBackend(site=tmp_path / "missing.json")


@pytest.mark.parametrize(("site", "message"), [
    ({**SITE, "resource_manger": "SLURM"},
     r"site: 'resource_manger' is not a key .* \(did you mean 'resource_manager'\?\)"),
    ({**SITE, "schemas": {"local": {"job_manager_url": "slurm://localhost/"}}},
     r"site\.schemas\.local: 'job_manager_url' is not a key"),
    ({**SITE, "default_schema": "ssh"}, r"default_schema = 'ssh' is not one of its schemas"),
])
async def test_a_bad_site_key_is_named_before_anything_starts(site: dict[str, object],
                                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await RadicalExecutionBackend(site=site, nodes=1)


def test_services_watched_from_here_need_the_sandbox_or_the_tasks_here() -> None:
    from asyncflow.services import readiness
    from asyncflow_radical._services import unsupported

    def service(**description: object) -> TaskSpec:
        return command(("server",), service=readiness("server", description))

    line, file = service(ready_line="up"), service(ready_file="ready.flag")
    loopback, remote_port = service(ready_port=8000), service(ready_port=8000,
                                                             ready_host="node17")
    for spec in (line, file, loopback, remote_port, service()):  # a pilot on this machine
        assert unsupported(spec, sandbox_here=True, runs_here=True, resource="x.y") is None
    problem = unsupported(line, sandbox_here=False, runs_here=False, resource="tacc.frontera")
    assert problem is not None and "ready_line" in problem and "'step'" in problem
    assert "tacc.frontera" in problem
    assert "ready_file" in str(unsupported(file, sandbox_here=False, runs_here=False,
                                           resource="x.y"))
    problem = unsupported(loopback, sandbox_here=True, runs_here=False, resource="x.y")
    assert problem is not None and "ready_host" in problem
    assert unsupported(remote_port, sandbox_here=False, runs_here=False, resource="x.y") is None
    assert unsupported(service(), sandbox_here=False, runs_here=False, resource="x.y") is None
