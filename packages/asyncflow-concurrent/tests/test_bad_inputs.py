"""Issue 15, point 5: every bad input the concurrent backend meets fails its own task with a
precise error, on every mode, and the next task runs (the table in docs/reliability.md).

The bodies are closures defined in the tests: in processes mode they travel by value.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from concurrent_support import LIMIT

from asyncflow import (
    ExecutableFailedError,
    RemoteError,
    RemoteTraceback,
    TaskExitError,
    WorkerLostError,
    WorkflowEngine,
)

BIG = 50 * 1024 * 1024  # bytes of output


async def settle(future: Any) -> Any:
    return await asyncio.wait_for(future, LIMIT)


async def next_task_runs(flow: WorkflowEngine) -> None:
    @flow.function_task
    async def after(x: int) -> int:
        return x + 1

    assert await settle(after(1)) == 2


class TwoArgumentsError(Exception):
    """An exception whose constructor is not the one pickling assumes (``cls(*args)``)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")
        self.a, self.b = a, b


class HoldsALockError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()  # cannot be pickled: the exception cannot travel


def raises(error: Callable[[], BaseException]) -> Callable[[], Any]:
    def body() -> None:
        raise error()

    return body


@pytest.mark.parametrize("exit_error", [KeyboardInterrupt, lambda: SystemExit(3)],
                         ids=["KeyboardInterrupt", "SystemExit"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async-def"])
async def test_a_body_that_exits_fails_its_task_and_the_rest_go_on(
        flow: WorkflowEngine, exit_error: Callable[[], BaseException], asynchronous: bool) -> None:
    body = raises(exit_error)
    if asynchronous:
        plain = body

        async def body() -> None:  # type: ignore[misc]
            plain()

    task = flow.function_task(body)
    for _ in range(2):  # the backend is whole after the first
        with pytest.raises(TaskExitError, match="the task's body raised") as raised:
            await settle(task())
        assert isinstance(raised.value.error, KeyboardInterrupt | SystemExit)
        assert raised.value.__cause__ is raised.value.error
    await next_task_runs(flow)


async def test_an_exception_with_its_own_constructor_keeps_its_type(
        flow: WorkflowEngine) -> None:
    task = flow.function_task(raises(lambda: TwoArgumentsError(1, 2)))
    with pytest.raises(TwoArgumentsError, match=r"^1 and 2$") as raised:
        await settle(task())
    assert (raised.value.a, raised.value.b) == (1, 2)
    if flow.backend.mode == "processes":  # type: ignore[attr-defined]
        assert isinstance(raised.value.__cause__, RemoteTraceback)
        assert "TwoArgumentsError: 1 and 2" in str(raised.value.__cause__)
    await next_task_runs(flow)


@pytest.mark.parametrize("mode", ["processes"])
async def test_an_exception_that_cannot_travel_arrives_as_a_stand_in(
        flow: WorkflowEngine) -> None:
    task = flow.function_task(raises(lambda: HoldsALockError("locked in")))
    with pytest.raises(RemoteError, match=r"HoldsALockError: locked in$") as raised:
        await settle(task())
    assert raised.value.type_name.endswith("HoldsALockError")
    assert raised.value.message == "locked in"
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "in body" in str(raised.value.__cause__)  # where it was raised, over there
    await next_task_runs(flow)


@pytest.mark.parametrize("mode", ["processes"])
async def test_unpicklable_arguments_and_results_fail_their_task(flow: WorkflowEngine) -> None:
    @flow.function_task
    def takes(value: Any) -> int:
        return 1

    @flow.function_task
    def gives() -> Any:
        return threading.Lock()

    with pytest.raises(TypeError, match=r"task 'takes' \(task\.\d+\) cannot be sent to a "
                                        "worker process: TypeError: cannot pickle"):
        await settle(takes(threading.Lock()))
    with pytest.raises(TypeError, match=r"return value \(lock\) cannot be sent back"):
        await settle(gives())
    await next_task_runs(flow)


@pytest.mark.parametrize("mode", ["processes"])
async def test_os_exit_in_a_process_body_loses_only_that_task(flow: WorkflowEngine) -> None:
    @flow.function_task
    def leave() -> None:
        os._exit(3)

    with pytest.raises(WorkerLostError, match=r"task 'leave' .* exited with code 3"):
        await settle(leave())
    await next_task_runs(flow)


async def test_a_command_that_does_not_exist_exits_127(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def missing() -> str:
        return "asyncflow-no-such-command --flag"

    with pytest.raises(ExecutableFailedError, match="No such file or directory") as raised:
        await settle(missing())
    assert raised.value.exit_code == 127
    await next_task_runs(flow)


async def test_a_missing_working_directory_is_named(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def elsewhere() -> str:
        return "true"

    with pytest.raises(ExecutableFailedError, match="/asyncflow-no-such-dir"):
        await settle(elsewhere(task_description={"cwd": "/asyncflow-no-such-dir"}))
    await next_task_runs(flow)


async def test_output_that_is_not_utf8_is_decoded_with_replacement(
        flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def binary() -> str:
        return f"{sys.executable} -c \"import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe')\""

    assert await settle(binary()) == "ok\ufffd\ufffd"
    await next_task_runs(flow)


@pytest.mark.parametrize("mode", ["loop"])
async def test_fifty_megabytes_of_output_arrive_whole(flow: WorkflowEngine) -> None:
    @flow.executable_task
    async def big() -> str:
        return f"head -c {BIG} /dev/zero"

    out = await settle(big())
    assert len(out) == BIG and out.count("\0") == BIG
    await next_task_runs(flow)
