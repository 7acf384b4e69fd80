"""Service tasks on the concurrent backend: readiness by port, file and output line, failures
before and after readiness, cancellation, and process groups stopped at shutdown."""

from __future__ import annotations

import asyncio
import shlex
import socket
import sys
from pathlib import Path

import pytest
import radical.asyncflow as rflow

from asyncflow import (
    CapabilityError,
    ConcurrentExecutionBackend,  # type: ignore[attr-defined]
    ServiceEndpoint,
    ServiceExitedError,
    ServiceNotReadyError,
    TaskState,
    WorkflowEngine,
    hookimpl,
)
from asyncflow.testing.processes import alive

pytestmark = pytest.mark.timeout(60)


def python(code: str) -> str:
    return shlex.join([sys.executable, "-u", "-c", code])


# A TCP server on a free port that prints the port once it listens, then serves forever.
SERVER = python(
    "import socket, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "print('listening on', s.getsockname()[1], flush=True)\n"
    "while True: s.accept()[0].close()")


async def test_ready_on_an_output_line_with_the_port_in_the_endpoint(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True,
                              task_description={"ready_line": r"listening on (?P<port>\d+)"})
        def server() -> str:
            return SERVER

        @flow.function_task
        async def ping(endpoint: ServiceEndpoint) -> str:
            assert endpoint.port is not None
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.close()
            await writer.wait_closed()
            return f"reached {endpoint.address}"

        service = server()
        endpoint = await service
        assert service.state == TaskState.DONE
        assert endpoint.port is not None and endpoint.match == {"port": str(endpoint.port)}
        assert await ping(service) == f"reached 127.0.0.1:{endpoint.port}"
        assert endpoint.pid is not None and alive(endpoint.pid)
    assert not alive(endpoint.pid)  # stopped by the shutdown


async def test_ready_when_a_port_accepts(tmp_path: Path) -> None:
    # Learn a free port from a first service, then wait on a second one by ready_port.
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True)
        def server(command: str) -> str:
            return command

        probe = await server(SERVER, task_description={"ready_line": r"on (?P<port>\d+)"})
        port = probe.port
        assert port is not None
        second = await server(python(
            f"import socket, time; s = socket.socket(); time.sleep(0.3);"
            f" s.bind(('127.0.0.1', {port + 1})); s.listen(); time.sleep(600)"),
            task_description={"ready_port": port + 1, "ready_timeout": 30})
        assert second.port == port + 1 and second.line is None


async def test_ready_when_a_file_appears(tmp_path: Path) -> None:
    flag = tmp_path / "ready.flag"
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True, task_description={"ready_file": str(flag)})
        def writer() -> str:
            return python(f"import pathlib, time; time.sleep(0.2); "
                          f"pathlib.Path({str(flag)!r}).touch(); time.sleep(600)")

        endpoint = await writer()
        assert endpoint.file == str(flag) and flag.exists()


async def test_not_ready_in_time_is_stopped_with_a_clear_error(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True)
        def slow() -> str:
            return python("import os, time; print('pid', os.getpid(), flush=True); "
                          "time.sleep(600)")

        with pytest.raises(ServiceNotReadyError) as raised:
            await slow(task_description={"ready_line": "never", "ready_timeout": 0.5})
        error = raised.value
        assert "never" in error.condition and "0.5 s" in str(error)
        pid = int(error.output.split()[1])
        assert not alive(pid)


async def test_dies_before_ready_fails_with_exit_code_and_output(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True, task_description={"ready_port": 9})
        def broken() -> str:
            return "sh -c 'echo address already in use >&2; exit 98'"

        @flow.executable_task(service=True)
        def missing() -> str:
            return "/nonexistent/server --port 1"

        with pytest.raises(ServiceExitedError) as raised:
            await broken()
        assert raised.value.exit_code == 98 and not raised.value.ready
        assert "address already in use" in str(raised.value)
        with pytest.raises(ServiceExitedError) as raised:
            await missing()
        assert raised.value.exit_code == 127


async def test_a_later_death_is_logged_and_observed(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    gone: asyncio.Queue[BaseException | None] = asyncio.Queue()

    class Watcher:
        @hookimpl
        def asyncflow_service_exited(self, error: BaseException | None) -> None:
            gone.put_nowait(error)

    stop = tmp_path / "stop"
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path,
                                     observers=[Watcher()]) as flow:
        @flow.executable_task(service=True, task_description={"ready_line": "up"})
        def fragile() -> str:
            return python(f"import os, sys, time; print('up', flush=True)\n"
                          f"while not os.path.exists({str(stop)!r}): time.sleep(0.05)\n"
                          f"print('crashing', flush=True); sys.exit(3)")

        await fragile()
        stop.touch()
        error = await gone.get()
        assert isinstance(error, ServiceExitedError)
        assert error.ready and error.exit_code == 3 and "crashing" in error.output
    assert "stopped while the workflow was running" in caplog.text


async def test_a_later_death_is_in_the_journal_and_the_report(tmp_path: Path) -> None:
    from asyncflow.journal import read_run
    from asyncflow.report import write_report

    gone = asyncio.Event()

    class Watcher:
        @hookimpl
        def asyncflow_service_exited(self) -> None:
            gone.set()

    async with WorkflowEngine.create("concurrent", work_dir=tmp_path, journal=True,
                                     observers=[Watcher()]) as flow:
        @flow.executable_task(service=True, task_description={"ready_line": "up"})
        def short_lived() -> str:
            return python("import sys; print('up', flush=True); sys.exit(4)")

        service = short_lived()
        await service
        await gone.wait()
    run = read_run(tmp_path / flow.uid)
    task = run.tasks[service.uid]
    assert task.state == "DONE" and task.exited is not None
    assert task.exited[1] == 4 and "exited with code 4 after it was ready" in str(task.exited[2])
    page = write_report(tmp_path / flow.uid).read_text()
    assert "Services that ended during the run" in page and "short_lived" in page


async def test_sigterm_then_sigkill_for_a_service_that_ignores_sigterm(tmp_path: Path) -> None:
    backend = ConcurrentExecutionBackend(service_grace=0.3)
    async with WorkflowEngine.create(backend, work_dir=tmp_path) as flow:
        @flow.executable_task(service=True, task_description={"ready_line": "ready"})
        def stubborn() -> str:
            return python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                          " print('ready', flush=True); time.sleep(600)")

        endpoint = await stubborn()
        assert endpoint.pid is not None
    assert not alive(endpoint.pid)


async def test_cancel_before_ready_stops_the_service(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True, task_description={"ready_line": "never"})
        def waiting() -> str:
            return python("import time; print('started', flush=True); time.sleep(600)")

        service = waiting()
        await asyncio.sleep(0)  # released to the backend
        assert service.cancel()
        with pytest.raises(asyncio.CancelledError):
            await service
        assert service.state == TaskState.CANCELLED


async def test_function_service_on_the_event_loop(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port, for the server to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.function_task(service=True)
        async def echo_server(port: int) -> None:
            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(await reader.readline())
                await writer.drain()
                writer.close()

            async with await asyncio.start_server(echo, "127.0.0.1", port) as server:
                await server.serve_forever()

        endpoint = await echo_server(port, task_description={"ready_port": port})
        assert endpoint.address == f"127.0.0.1:{port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.close()
        await writer.wait_closed()


async def test_function_services_need_the_loop_mode(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", executor="threads",
                                     work_dir=tmp_path) as flow:
        @flow.function_task(service=True)
        async def serve() -> None:
            await asyncio.Event().wait()

        with pytest.raises(CapabilityError, match="bodies on the event loop"):
            await serve()


async def test_bad_readiness_names_the_task_and_key(tmp_path: Path) -> None:
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        @flow.executable_task(service=True)
        def serve() -> str:
            return "sleep 60"

        with pytest.raises(ValueError, match="service 'serve': ready_port"):
            await serve(task_description={"ready_port": 70000})
        with pytest.raises(ValueError, match=r"ready_line .* not a valid regular expression"):
            await serve(task_description={"ready_line": "(unclosed"})
    with pytest.raises(TypeError, match="service= must be True or False"):
        flow.executable_task(service="yes")(lambda: "true")


async def test_upstream_spelling_on_the_alias(tmp_path: Path) -> None:
    backend = await rflow.ConcurrentExecutionBackend()
    flow = await rflow.WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        @flow.executable_task(service=True)
        async def service(task_description: dict[str, object] | None = None) -> str:
            return python("print('serving', flush=True); import time; time.sleep(600)")

        endpoint = await service(task_description={"ready_line": "serving"})
        assert isinstance(endpoint, rflow.ServiceEndpoint)
    finally:
        await flow.shutdown()


async def test_stop_service_stops_a_ready_one_and_refuses_other_tasks(tmp_path: Path) -> None:
    gone: list[str] = []

    class Watcher:
        @hookimpl
        def asyncflow_service_exited(self, service: object) -> None:
            gone.append(str(service))

    async with WorkflowEngine.create("concurrent", work_dir=tmp_path,
                                     observers=[Watcher()]) as flow:
        @flow.executable_task(service=True, task_description={"ready_line": "ready"})
        def server() -> str:
            return python("import time; print('ready', flush=True); time.sleep(600)")

        @flow.executable_task
        def wait() -> str:
            return "sleep 600"

        first, second = server(), server()
        one, two = await asyncio.gather(first, second)
        assert one.pid is not None and two.pid is not None
        assert await flow.stop_service(first) is True
        assert not alive(one.pid) and alive(two.pid)  # the other one serves on
        assert first.state == TaskState.DONE and first.result() is one
        assert await flow.stop_service(first) is False
        waiting = wait()
        with pytest.raises(ValueError, match=r"'wait' \(task\.\d+\) is not a service task"):
            await flow.stop_service(waiting)
        waiting.cancel()
        pending = server(task_description={"ready_line": "never"})
        assert await flow.stop_service(pending) is True  # before ready: a cancel
        assert pending.cancelled()
    assert not alive(two.pid) and gone == []
