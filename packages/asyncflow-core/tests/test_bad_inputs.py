"""Issue 15, point 5: bad inputs get a precise error naming what is at fault, at the earliest
moment it can be told (decoration, call, await), and the next task runs. The table of all of
them is in docs/reliability.md; the backend's own rows are in asyncflow-concurrent's tests.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from asyncflow import TaskExitError, UnknownBackendError, WorkflowEngine

LIMIT = 30.0


async def body() -> int:
    return 1


def generator() -> Any:
    yield 1


async def async_generator() -> Any:
    yield 1


async def next_task_runs(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def after(x: int) -> int:
        return x + 1

    assert await asyncio.wait_for(after(1), LIMIT) == 2


# -- at decoration -------------------------------------------------------------------------

AT_DECORATION: list[tuple[str, Callable[[WorkflowEngine], Any], type[Exception], str]] = [
    ("not callable", lambda flow: flow.function_task(42), TypeError,
     r"@function_task needs a function, got 42"),
    ("generator function", lambda flow: flow.function_task(generator), TypeError,
     r"@function_task on 'generator': a generator function cannot be a task body"),
    ("async generator function", lambda flow: flow.executable_task(async_generator), TypeError,
     r"@executable_task on 'async_generator': a generator function cannot be a task body"),
    ("generator block", lambda flow: flow.block(generator), TypeError,
     r"@block on 'generator': a generator function"),
    ("plain def block", lambda flow: flow.block(lambda: 1), TypeError,
     r"block '<lambda>' must be an `async def` function"),
    ("negative retries", lambda flow: flow.function_task(retries=-1)(body), ValueError,
     r"@function_task on 'body': retries= must be a whole number >= 0"),
    ("negative timeout", lambda flow: flow.function_task(timeout=-1)(body), ValueError,
     r"@function_task on 'body': timeout= must be a positive number of seconds, not -1"),
    ("zero timeout", lambda flow: flow.function_task(timeout=0)(body), ValueError,
     r"timeout= must be a positive number of seconds, not 0"),
    ("unknown option", lambda flow: flow.function_task(retry=2)(body), TypeError,
     r"@function_task on 'body': unknown option\(s\) \['retry'\]"),
    ("backend not a name", lambda flow: flow.function_task(backend=3)(body), TypeError,
     r"backend= must be a backend name \(str\), not 3"),
    ("task_description not a dict",
     lambda flow: flow.function_task(task_description="x")(body), TypeError,
     r"@function_task on 'body': task_description= must be a dict, not str"),
    ("env not a dict",
     lambda flow: flow.executable_task(task_description={"env": "x"})(body), TypeError,
     r"@executable_task on 'body': .*task_description\['env'\] must be a dict of variable "
     r"names to values, not str 'x'"),
    ("cwd not a path",
     lambda flow: flow.executable_task(task_description={"cwd": 5})(body), TypeError,
     r"task_description\['cwd'\] must be a directory path, not int 5"),
    ("shell not a bool",
     lambda flow: flow.executable_task(task_description={"shell": "yes"})(body), TypeError,
     r"task_description\['shell'\] must be true or false, not 'yes'"),
]


@pytest.mark.parametrize(("make", "error", "message"), [row[1:] for row in AT_DECORATION],
                         ids=[row[0] for row in AT_DECORATION])
async def test_refused_at_decoration(flow: WorkflowEngine, make: Callable[..., Any],
                                     error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make(flow)
    await next_task_runs(flow)


# -- at the call ---------------------------------------------------------------------------

AT_CALL = [
    ("task_description not a dict", "x", TypeError,
     r"task 'echo': task_description must be a dict, not str"),
    ("env not a dict", {"env": "x"}, TypeError,
     r"task 'echo': task_description\['env'\] must be a dict of variable names to values, "
     r"not str 'x'"),
    ("cwd not a path", {"cwd": 5}, TypeError,
     r"task 'echo': task_description\['cwd'\] must be a directory path"),
]


@pytest.mark.parametrize(("description", "error", "message"), [row[1:] for row in AT_CALL],
                         ids=[row[0] for row in AT_CALL])
async def test_refused_at_the_call(flow: WorkflowEngine, description: Any,
                                   error: type[Exception], message: str) -> None:
    @flow.executable_task
    async def echo() -> str:
        return "echo hi"

    with pytest.raises(error, match=message):
        echo(task_description=description)
    await next_task_runs(flow)


# -- at await ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, "", "   ", ["echo", "x"]],
                         ids=["None", "empty", "blank", "list"])
async def test_an_executable_body_must_return_a_command(flow: WorkflowEngine,
                                                        command: Any) -> None:
    @flow.executable_task
    async def build() -> Any:
        return command

    with pytest.raises(ValueError, match=rf"executable task 'build' must return a non-empty "
                                         rf"command string, not {re.escape(repr(command))}"):
        await asyncio.wait_for(build(), LIMIT)
    await next_task_runs(flow)


async def test_an_unknown_backend_name_fails_the_task(flow: WorkflowEngine) -> None:
    @flow.function_task(backend="gpu")
    async def elsewhere() -> int:
        return 1

    with pytest.raises(UnknownBackendError, match=r"task 'elsewhere' \(task\.\d+\) asks for "
                                                  r"backend 'gpu', but this engine has 'loop'"):
        await asyncio.wait_for(elsewhere(), LIMIT)
    await next_task_runs(flow)


@pytest.mark.parametrize("exit_error", [KeyboardInterrupt, lambda: SystemExit(2)],
                         ids=["KeyboardInterrupt", "SystemExit"])
@pytest.mark.parametrize("kind", ["executable", "block"])
async def test_a_body_on_the_loop_that_exits_fails_its_task_only(
        flow: WorkflowEngine, exit_error: Callable[[], BaseException], kind: str) -> None:
    # Executable and block bodies run on the engine's loop, whatever the backend.
    async def leave() -> str:
        raise exit_error()

    task = flow.executable_task(leave) if kind == "executable" else flow.block(leave)
    with pytest.raises(TaskExitError, match=r"'leave' \((task|block)\.\d+\): the task's body "
                                            r"raised (KeyboardInterrupt|SystemExit\(2\))"):
        await asyncio.wait_for(task(), LIMIT)
    await next_task_runs(flow)
