"""Issue 12: RADICAL AsyncFlow scripts on ``radical.asyncflow`` with the concurrent backend.

Upstream's way of building the backend, its "shell commands", the exceptions ported code
catches, and a finished executable's stdout, stderr and exit code read from its future.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import radical.asyncflow as ra
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def flow(tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    # upstream's form: a started backend instance handed to create()
    engine = await WorkflowEngine.create(backend=await ConcurrentExecutionBackend(),
                                         work_dir=tmp_path)
    yield engine
    await engine.shutdown()


# -- point 2: construction -----------------------------------------------------------------


async def test_two_named_concurrent_backends_serve_one_engine() -> None:
    with ThreadPoolExecutor(2) as pool:
        cpu = await ConcurrentExecutionBackend(pool, name="cpu")
        io = ConcurrentExecutionBackend({"max_workers": 1}, name="io")
        flow = await WorkflowEngine.create(backend=[cpu, io])
        try:
            assert list(flow.backends) == ["cpu", "io"] and flow.backend is cpu
            assert io.mode == "loop"

            @flow.function_task(backend="io")
            def where() -> str:
                return "io"

            @flow.function_task
            async def add(text: str) -> str:
                return text + "+cpu"

            assert await add(where()) == "io+cpu"
        finally:
            await flow.shutdown()


def test_a_wrong_option_in_the_dict_fails_like_a_wrong_keyword() -> None:
    messages = []
    for build in (lambda: ConcurrentExecutionBackend({"max_worker": 2}),
                  lambda: ConcurrentExecutionBackend(max_worker=2)):
        with pytest.raises(ra.BackendOptionError) as raised:
            build()
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "'max_worker' (did you mean 'max_workers'?)" in messages[0]
    assert "ConcurrentExecutionBackend" in messages[0]


# -- point 3: shell operators --------------------------------------------------------------


@pytest.mark.parametrize(("command", "operator"), [
    ('echo "task1" >> {file}', ">>"),
    ("echo task1 > {file}", ">"),
    ("cat < {file}", "<"),
    ("echo a | tee {file}", "|"),
    ('/bin/echo "I got executed at" && touch {file}', "&&"),
    ("false || touch {file}", "||"),
    ("echo a; touch {file}", ";"),
    ("ls {file} 2>&1", "2>&1"),
    ("touch {file} &", "&"),
])
async def test_an_unquoted_shell_operator_fails_the_task_and_names_the_fix(
        flow: WorkflowEngine, tmp_path: Path, command: str, operator: str) -> None:
    target = tmp_path / "file"

    @flow.executable_task
    async def shell_command() -> str:
        return command.format(file=target)

    with pytest.raises(ValueError) as raised:
        await shell_command()
    message = str(raised.value)
    assert f"shell operator {operator!r}" in message, message
    assert "'shell_command'" in message and "task_description={'shell': True}" in message
    assert not target.exists(), "nothing ran"


async def test_the_same_command_runs_with_a_shell_when_asked(flow: WorkflowEngine,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "file"

    @flow.executable_task
    async def append(task_description: dict[str, bool] = {"shell": True}) -> str:  # noqa: B006
        return f'echo "task1" >> {target} && echo "task2" >> {target}'

    assert await append() == ""
    assert target.read_text() == "task1\ntask2\n"


async def test_a_quoted_or_escaped_operator_is_an_ordinary_argument(
        flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def command(text: str) -> str:
        return text

    assert await command("printf '%s ' '|' \">>\" a\\;b '2>&1'") == "| >> a;b 2>&1 "


async def test_an_unbalanced_quote_names_the_task(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def unbalanced() -> str:
        return "echo 'never closed"

    with pytest.raises(ValueError, match=r"executable task 'unbalanced': cannot split the "
                                         r"command .* no closing quotation"):
        await unbalanced()


# -- point 4: what ported code catches ------------------------------------------------------


async def test_a_failed_executable_is_a_runtime_error(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def fail() -> str:
        return "sh -c 'echo broken >&2; exit 4'"

    with pytest.raises(RuntimeError, match="exited with code 4") as raised:
        await fail()
    assert isinstance(raised.value, ra.ExecutableFailedError)


# -- point 7: stdout, stderr and exit code from the future ----------------------------------


async def test_a_finished_command_tells_stdout_stderr_and_exit_code(
        flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def speak() -> str:
        return "sh -c 'echo said; echo warned >&2'"

    @flow.function_task
    async def upper(text: str) -> str:
        return text.upper()

    future = speak()
    assert (future.stdout, future.stderr, future.exit_code) == (None, None, None)
    assert await future == "said\n"
    assert (future.stdout, future.stderr, future.exit_code) == ("said\n", "warned\n", 0)
    assert dict(future.task) == {
        "uid": future.uid, "name": "speak", "state": "DONE", "stdout": "said\n",
        "stderr": "warned\n", "exit_code": 0, "return_value": "said\n", "exception": None}
    assert await upper(future) == "SAID\n", "a later task gets the output as a str"


async def test_a_failed_command_tells_them_too(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def fail() -> str:
        return "sh -c 'echo partial; echo broken >&2; exit 3'"

    future = fail()
    with pytest.raises(ra.ExecutableFailedError):
        await future
    assert (future.stdout, future.stderr, future.exit_code) == ("partial\n", "broken\n", 3)
    assert future.task["state"] == "FAILED"
    assert future.task["exception"] is future.exception()


async def test_captured_stdio_gives_the_files(flow: WorkflowEngine, tmp_path: Path) -> None:
    @flow.executable_task(capture_stdio=True)
    async def speak() -> str:
        return "sh -c 'echo said; echo warned >&2'"

    future = speak()
    path = await future
    assert future.stdout == path and _text(path) == "said\n"
    assert Path(path).is_relative_to(tmp_path)
    assert future.stderr is not None and _text(future.stderr) == "warned\n"
    assert future.exit_code == 0


def _text(path: str) -> str:
    return Path(path).read_text()


async def test_function_tasks_have_no_command_details(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def value() -> int:
        return 7

    future = value()
    assert await future == 7
    assert (future.stdout, future.stderr, future.exit_code) == (None, None, None)
    assert future.task["return_value"] == 7
