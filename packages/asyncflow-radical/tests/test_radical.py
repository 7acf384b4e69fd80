"""The radical backend through a WorkflowEngine, on the session's real pilot."""

from __future__ import annotations

import asyncio
import os
import traceback
from pathlib import Path

import psutil
import pytest
import radical_bodies as bodies
from conftest import StateWatch

from asyncflow import (
    ExecutableFailedError,
    InputFile,
    OutputFile,
    TaskState,
    TaskTimeoutError,
    WorkflowEngine,
)


async def test_executable_output_is_its_stdout(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def greet(name: str) -> str:
        return f"echo hello {name}"

    assert await greet("pilot") == "hello pilot\n"


async def test_nonzero_exit_fails_with_code_and_stderr_tail(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def broken() -> str:
        return "sh -c 'echo partial; echo first >&2; echo last words >&2; exit 7'"

    with pytest.raises(ExecutableFailedError) as raised:
        await broken()
    assert raised.value.exit_code == 7
    assert raised.value.stderr.splitlines()[-1] == "last words"
    assert "exited with code 7" in str(raised.value)


async def test_arguments_and_environment_arrive_verbatim(flow: WorkflowEngine) -> None:
    # RADICAL-Pilot writes arguments in double quotes and environment values raw: $, quotes
    # and backslashes must still reach the command as they were written.
    tricky = ['$HOME', 'a"b', "c\\d", "`id`", "it's"]

    @flow.executable_task
    def show(*words: str) -> str:
        return "printf '%s|' " + " ".join(f"'{w}'" if "'" not in w else f'"{w}"' for w in words)

    @flow.executable_task(task_description={"shell": True,
                                            "env": {"VALUE": 'say "$x" `now` \\o/'}})
    def loop_in_a_shell() -> str:
        return 'for i in 1 2; do printf "$i:"; done; printf "%s" "$VALUE"'

    assert await show(*tricky) == "|".join(tricky) + "|"
    assert await loop_in_a_shell() == '1:2:say "$x" `now` \\o/'


async def test_cwd_and_capture_stdio(flow: WorkflowEngine, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()

    @flow.executable_task(capture_stdio=True, task_description={"cwd": str(here)})
    def where() -> str:
        return "sh -c 'pwd; echo to-stderr >&2'"

    result = Path(await where())
    assert _text(result) == f"{here}\n"
    assert _text(result.with_suffix(".stderr")) == "to-stderr\n"
    assert not _listing(here)  # RADICAL-Pilot's own files stay in its sandbox


async def test_long_output_is_not_cut_to_radicals_one_kib(flow: WorkflowEngine) -> None:
    @flow.executable_task
    def count() -> str:
        return "seq 1 2000"

    lines = (await count()).splitlines()
    assert lines[0] == "1" and lines[-1] == "2000" and len(lines) == 2000


async def test_cancelling_a_running_command_kills_it(flow: WorkflowEngine,
                                                     tmp_path: Path) -> None:
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)

    @flow.executable_task
    def wait() -> str:  # tells its pid through the pipe, then becomes the sleep
        return f"sh -c 'echo $$ > {fifo}; exec sleep 600'"

    future = wait()
    pid = int(await asyncio.to_thread(_text, fifo))  # returns once the command runs
    sleeping = psutil.Process(pid)
    assert future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    _, alive = await asyncio.to_thread(psutil.wait_procs, [sleeping], timeout=30)
    assert not alive, f"cancelled, but still running: {alive}"


async def test_executable_timeout(flow: WorkflowEngine) -> None:
    @flow.executable_task(timeout=1)
    def too_long() -> str:
        return "sleep 600"

    with pytest.raises(TaskTimeoutError):
        await too_long()


async def test_files_move_between_tasks_and_from_here(
        flow: WorkflowEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative InputFile that no task made is found here
    _write(tmp_path / "local.txt", "from the client\n")

    @flow.executable_task
    def write(out: OutputFile) -> str:
        return f"sh -c 'mkdir -p results && echo made on the pilot > {out}'"

    @flow.executable_task
    def read(made: InputFile, local: InputFile, _after: object) -> str:
        return f"cat {made} {local}"

    written = write(OutputFile("results/data.txt"))
    text = await read(InputFile("results/data.txt"), InputFile("local.txt"), written)
    assert text == "made on the pilot\nfrom the client\n"


async def test_an_input_file_that_nothing_provides_fails_that_task(
        flow: WorkflowEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    @flow.executable_task
    def read(source: InputFile) -> str:
        return f"cat {source}"

    with pytest.raises(FileNotFoundError, match=r"nowhere\.txt"):
        await read(InputFile("nowhere.txt"))


async def test_function_tasks(flow: WorkflowEngine) -> None:
    offset = 10

    @flow.function_task
    async def shifted(x: int) -> int:  # a closure from a test: travels by value
        await asyncio.sleep(0)
        return x + offset

    divide = flow.function_task(bodies.divide)  # from a module: travels by reference
    later = flow.function_task(bodies.later)
    where = flow.function_task(bodies.worker_pid)
    results = await asyncio.gather(shifted(1), divide(7, 2), later("async"), where())
    assert results[:3] == [11, (3.5, 1), "async"]  # a tuple stays a tuple
    assert results[3] != os.getpid()


async def test_function_exception_keeps_type_and_remote_traceback(flow: WorkflowEngine) -> None:
    refuse = flow.function_task(bodies.refuse)
    with pytest.raises(bodies.UnusualError, match="not today") as raised:
        await refuse("not today")
    text = "".join(traceback.format_exception(raised.value))
    assert "radical_bodies.py" in text and "in refuse" in text


async def test_cancelling_a_running_function_stops_it(flow: WorkflowEngine,
                                                      states: StateWatch) -> None:
    @flow.function_task
    def block() -> str:
        import time
        time.sleep(600)
        return "never"

    future = block()
    await states.reached(future.uid, TaskState.RUNNING)
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    # RAPTOR still takes function tasks after a cancel. (The worker has 3 cores, so this
    # cannot tell whether the cancelled body freed its core.)
    assert await flow.function_task(bodies.later)("after") == "after"


async def test_function_timeout(flow: WorkflowEngine) -> None:
    @flow.function_task(timeout=1)
    async def too_long() -> None:
        await asyncio.sleep(600)

    with pytest.raises(TaskTimeoutError):
        await too_long()


async def test_task_description_is_checked_per_task(flow: WorkflowEngine) -> None:
    @flow.executable_task(task_description={"no_such_field": 1})
    def bad() -> str:
        return "true"

    @flow.executable_task(task_description={"pre_exec": ["export GREETING=hi"]})
    def good() -> str:
        return "sh -c 'echo $GREETING'"

    with pytest.raises(ValueError, match="no_such_field"):
        await bad()
    assert await good() == "hi\n"


def _text(path: Path) -> str:
    return path.read_text()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _listing(folder: Path) -> list[Path]:
    return list(folder.iterdir())
