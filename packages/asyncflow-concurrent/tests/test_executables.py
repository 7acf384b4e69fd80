"""Executable tasks: exec or shell, output and failures, cwd and env, captured stdio, and
process groups that die with the task."""

from __future__ import annotations

from pathlib import Path

import pytest
from concurrent_support import exited, fifo, receive

from asyncflow import ExecutableFailedError, TaskTimeoutError, WorkflowEngine
from asyncflow.testing.processes import alive


async def test_commands_run_without_a_shell_unless_asked(flow: WorkflowEngine,
                                                         tmp_path: Path) -> None:
    @flow.executable_task
    def command(text: str) -> str:
        return text

    target = tmp_path / "written"
    assert await command("""printf '%s|' "a  b" 'c;d'""") == "a  b|c;d|"
    with pytest.raises(ValueError, match="shell operator '>'"):
        await command(f"echo hi > {target}")
    assert not target.exists()
    shelled = command(f"echo hi > {target}", task_description={"shell": True})
    assert await shelled == ""
    assert target.read_text() == "hi\n"


async def test_a_failing_command_reports_code_command_and_stderr(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def fail() -> str:
        return "sh -c 'echo first >&2; echo last words >&2; exit 3'"

    with pytest.raises(ExecutableFailedError) as failed:
        await fail()
    error = failed.value
    assert error.exit_code == 3
    assert "last words" in error.stderr and "last words" in str(error)
    assert "exited with code 3" in str(error) and "echo last words" in str(error)


async def test_cwd_and_env_per_task(flow: WorkflowEngine, tmp_path: Path) -> None:
    @flow.executable_task(task_description={"shell": True})
    def where() -> str:
        return "pwd; echo $ASYNCFLOW_TEST_VALUE"

    here = where(task_description={"shell": True, "cwd": str(tmp_path),
                                   "env": {"ASYNCFLOW_TEST_VALUE": "42"}})
    directory, value = (await here).splitlines()
    assert _same_place(directory, tmp_path) and value == "42"


async def test_captured_stdio_goes_to_files_under_the_run_folder(flow: WorkflowEngine,
                                                                 tmp_path: Path) -> None:
    @flow.executable_task(capture_stdio=True)
    def talk() -> str:
        return "sh -c 'echo to-out; echo to-err >&2'"

    task = talk()
    stdout = Path(await task)
    assert stdout == tmp_path / flow.uid / f"{task.uid}.stdout"
    assert _text(stdout) == "to-out\n"
    assert _text(stdout.with_suffix(".stderr")) == "to-err\n"


async def test_cancelling_a_running_command_kills_its_process_group(
        flow: WorkflowEngine, tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "pids")

    @flow.executable_task(task_description={"shell": True})
    def sleepers() -> str:  # a shell and a background sleep, in one process group
        return f"sleep 3600 & echo $$ $! > {pipe}; wait"

    task = sleepers()
    shell, sleeper = map(int, (await receive(pipe)).split())
    assert alive(shell) and alive(sleeper)
    task.cancel()
    await exited(shell)
    await exited(sleeper)
    assert task.cancelled()


async def test_a_command_past_its_timeout_is_killed(flow: WorkflowEngine,
                                                    tmp_path: Path) -> None:
    pipe = fifo(tmp_path / "pids")

    @flow.executable_task(timeout=0.5, task_description={"shell": True})
    def sleepers() -> str:
        return f"sleep 3600 & echo $$ $! > {pipe}; wait"

    task = sleepers()
    shell, sleeper = map(int, (await receive(pipe)).split())
    with pytest.raises(TaskTimeoutError, match=r"'sleepers' exceeded its timeout of 0\.5 s"):
        await task
    await exited(shell)
    await exited(sleeper)


def _same_place(directory: str, path: Path) -> bool:
    return Path(directory).resolve() == path.resolve()


def _text(path: Path) -> str:
    return path.read_text()
