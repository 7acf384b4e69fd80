"""Service tasks on the session's real pilot: readiness by output line (stdout or stderr),
port and file, the endpoint, failures, cancel before ready, stop_service, and no process left
after a stop or the shutdown. The conformance kit covers the rest of the life cycle."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import StateWatch

from asyncflow import (
    CapabilityError,
    ServiceEndpoint,
    ServiceExitedError,
    TaskState,
    WorkflowEngine,
)

pytestmark = pytest.mark.timeout(240)


def python(code: str) -> str:
    return shlex.join([sys.executable, "-u", "-c", code])


# A TCP server on a free port that prints its pid and port once it listens.
SERVER = python(
    "import os, socket\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print('pid', os.getpid(), 'listening on', s.getsockname()[1], flush=True)\n"
    "while True: s.accept()[0].close()")


async def gone(pid: int, within: float = 30) -> bool:
    """Whether process ``pid`` ends within ``within`` seconds (awaited in a thread)."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    _, alive = await asyncio.to_thread(psutil.wait_procs, [process], timeout=within)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


async def pid_from(fifo: Path, service: asyncio.Future[object]) -> int:
    """The pid the service writes into ``fifo`` once it runs; its error if it fails first."""
    reading = asyncio.ensure_future(asyncio.to_thread(fifo.read_text))
    await asyncio.wait({reading, service}, return_when=asyncio.FIRST_COMPLETED)
    if not reading.done():
        await asyncio.to_thread(_unblock, fifo)
        await reading
        service.result()  # raises why it failed
        raise AssertionError(f"{service} ended before it wrote its pid")
    return int(reading.result())


def _unblock(fifo: Path) -> None:
    with open(fifo, "w"):  # the reader sees an empty pipe and returns
        pass


def is_dir(path: str) -> bool:
    return Path(path).is_dir()


def exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


async def test_ready_on_a_line_with_its_port_reached_then_stopped_at_shutdown(
        flow: WorkflowEngine, capsys: pytest.CaptureFixture[str]) -> None:
    @flow.executable_task(service=True, task_description={
        "ready_line": r"pid (?P<pid>\d+) listening on (?P<port>\d+)", "ready_timeout": 60})
    def server() -> str:
        return SERVER

    started = time.perf_counter()
    service = server()
    endpoint = await service
    ready_after = time.perf_counter() - started
    assert isinstance(endpoint, ServiceEndpoint) and service.state == TaskState.DONE
    assert endpoint.port is not None and endpoint.address == f"127.0.0.1:{endpoint.port}"
    assert endpoint.line is not None and endpoint.line.startswith("pid ")
    assert is_dir(endpoint.info["sandbox"])
    _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)  # it serves
    writer.close()
    await writer.wait_closed()
    pid = int(endpoint.match["pid"])
    await flow.shutdown()
    assert await gone(pid), f"service process {pid} outlived the shutdown"
    with capsys.disabled():
        print(f"\n[radical service] submit -> ready (line): {ready_after:.2f} s")


async def test_ready_when_a_port_accepts(flow: WorkflowEngine) -> None:
    with socket.socket() as probe:  # a free port, for the service to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    @flow.executable_task(service=True)
    def server() -> str:
        return python(f"import socket, time; time.sleep(0.5); s = socket.socket();"
                      f" s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)")

    endpoint = await server(task_description={"ready_port": port, "ready_timeout": 60})
    assert endpoint.port == port and endpoint.line is None


async def test_ready_line_on_stderr_and_a_file_in_its_sandbox(flow: WorkflowEngine) -> None:
    @flow.executable_task(service=True, task_description={
        "ready_line": "^up on stderr$", "ready_file": "ready.flag", "ready_timeout": 60})
    def writer() -> str:
        return python("import pathlib, sys, time; print('up on stderr', file=sys.stderr,"
                      " flush=True); time.sleep(0.3); pathlib.Path('ready.flag').touch();"
                      " time.sleep(600)")

    endpoint = await writer()
    assert endpoint.line == "up on stderr"
    assert exists(endpoint.file)
    assert Path(str(endpoint.file)).parent == Path(endpoint.info["sandbox"])  # relative: cwd


async def test_a_missing_command_fails_with_exit_code_127(flow: WorkflowEngine) -> None:
    @flow.executable_task(service=True, task_description={"ready_line": "never"})
    def missing() -> str:
        return "/nonexistent/server --port 1"

    with pytest.raises(ServiceExitedError) as raised:
        await missing()
    assert raised.value.exit_code == 127 and not raised.value.ready


async def test_a_service_that_is_not_ready_holds_back_no_other_task(
        flow: WorkflowEngine, states: StateWatch, tmp_path: Path) -> None:
    # RADICAL-Pilot's own TASK_SERVICE would stall this echo until the service is up.
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)

    @flow.executable_task(service=True, task_description={"ready_line": "never",
                                                          "ready_timeout": 120})
    def waiting() -> str:
        return python(f"import os, time; open({str(fifo)!r}, 'w').write(str(os.getpid()));"
                      " time.sleep(600)")

    @flow.executable_task
    def echo() -> str:
        return "echo meanwhile"

    service = waiting()
    running = states.reached(service.uid, TaskState.RUNNING)
    pid = await pid_from(fifo, service)  # returns once the command runs
    await running
    assert await echo() == "meanwhile\n"
    assert not service.done()
    assert service.cancel()  # before it was ready: cancelled, and the process stops
    with pytest.raises(asyncio.CancelledError):
        await service
    assert await gone(pid), f"cancelled service {pid} still runs"


async def test_stop_service_stops_the_process_and_the_engine_goes_on(
        flow: WorkflowEngine) -> None:
    @flow.executable_task(service=True, task_description={
        "ready_line": r"pid (?P<pid>\d+) listening on (?P<port>\d+)", "ready_timeout": 60})
    def server() -> str:
        return SERVER

    @flow.executable_task
    def echo() -> str:
        return "echo after"

    first, second = server(), server()
    one, two = await asyncio.gather(first, second)
    assert await flow.stop_service(first) is True
    assert await gone(int(one.match["pid"]), within=5)
    assert first.state == TaskState.DONE
    assert not await gone(int(two.match["pid"]), within=0.5)  # the other one serves on
    assert await echo() == "after\n"
    assert await flow.stop_service(first) is False
    await flow.shutdown()
    assert await gone(int(two.match["pid"]))


async def test_function_services_are_refused_naming_the_task(flow: WorkflowEngine) -> None:
    @flow.function_task(service=True)
    async def serve() -> None:
        await asyncio.Event().wait()

    with pytest.raises(CapabilityError, match=r"service 'serve' .* executable services only"):
        await serve(task_description={"ready_port": 9})
