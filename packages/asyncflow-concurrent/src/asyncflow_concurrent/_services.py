"""Service tasks on this machine: a command as its own process group, or an ``async def`` body
on the engine's loop, watched from one asyncio task per service.

That task starts the service, waits for its readiness condition (an output line, read from
the pipe as it comes; a port or a file, tried again after a short backoff: the waiting
happens in the service's own task, never on the engine's scheduling path), reports ``DONE``
with the endpoint, then waits for the service to end. An end before readiness fails the task
with the exit code and the output's tail; an end afterwards is reported once as ``FAILED``
(the engine logs it and tells the ``asyncflow_service_exited`` observers). Stopping sends
SIGTERM to the process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from asyncflow.backend import TaskSpec, TaskUpdate
from asyncflow.errors import ServiceExitedError, ServiceNotReadyError
from asyncflow.services import Readiness, ServiceEndpoint, port_accepts, wait_until

__all__ = ["Service"]

_TAIL_LINES = 50


class Service:
    """One service task, from start to stop."""

    def __init__(self, spec: TaskSpec, report: Callable[[TaskUpdate], None],
                 grace: float) -> None:
        assert spec.service is not None
        self.spec = spec
        self.ready: Readiness = spec.service
        self._report = report
        self.grace = grace  # seconds between SIGTERM and SIGKILL
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        # Made now: the reader may see the line before anyone waits for it.
        self._matched: asyncio.Future[tuple[str, dict[str, str]]] | None = (
            None if spec.service.line is None
            else asyncio.get_running_loop().create_future())
        self._proc: asyncio.subprocess.Process | None = None
        self._body: asyncio.Task[Any] | None = None
        self.is_ready = False
        self.task: asyncio.Task[None] | None = None  # run(), held by the backend

    # -- the service's own task ------------------------------------------------------------

    async def run(self) -> None:
        spec, ready = self.spec, self.ready
        launching = asyncio.ensure_future(self._launch())
        try:
            # Shielded: a cancel while the process starts must still find it to stop it.
            ended = await asyncio.shield(launching)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._terminate(await launching)
            self._report(TaskUpdate.canceled(spec.uid))
            return
        except OSError as exc:  # not found, not executable: what a shell calls 127 and 126
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            self._report(TaskUpdate.failed(spec.uid, ServiceExitedError(spec.name, code,
                                                                        str(exc))))
            return
        except Exception as exc:
            self._report(TaskUpdate.failed(spec.uid, exc))
            return
        try:
            conditions = asyncio.ensure_future(self._conditions())
            try:
                async with asyncio.timeout(ready.timeout):
                    await asyncio.wait({conditions, ended}, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                conditions.cancel()
                await self._terminate(ended)
                self._report(TaskUpdate.failed(spec.uid, ServiceNotReadyError(
                    spec.name, ready.timeout, ready.describe(), self.output())))
                return
            if not conditions.done():
                conditions.cancel()
                self._report(TaskUpdate.failed(spec.uid, await self._exit_error(ended)))
                return
            self._report(TaskUpdate.done(spec.uid, self._endpoint(conditions.result())))
            self.is_ready = True
            await asyncio.shield(ended)
            self._report(TaskUpdate.failed(spec.uid, await self._exit_error(ended)))
        except asyncio.CancelledError:  # cancelled before it was ready, or the shutdown
            await self._terminate(ended)
            if not self.is_ready:
                self._report(TaskUpdate.canceled(spec.uid))

    async def _launch(self) -> asyncio.Future[Any]:
        """Start the service; return what completes when it ends."""
        spec = self.spec
        if spec.function is not None:  # an async def body on this loop
            self._body = asyncio.ensure_future(spec.function(*spec.args, **spec.kwargs))
            return self._body
        env = None if not spec.env else {**os.environ, **{k: str(v) for k, v in
                                                          spec.env.items()}}
        common: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
                                  "stdin": subprocess.DEVNULL, "cwd": spec.cwd, "env": env,
                                  "start_new_session": True}
        if spec.shell:
            assert isinstance(spec.command, str)
            proc = await asyncio.create_subprocess_shell(spec.command, **common)
        else:
            proc = await asyncio.create_subprocess_exec(*spec.command or (), **common)
        self._proc = proc
        assert proc.stdout is not None
        reader = asyncio.ensure_future(self._read(proc.stdout))
        waited = asyncio.ensure_future(proc.wait())
        # Ended when it exited and its output is read to the end (the tail is complete).
        return asyncio.ensure_future(_both(waited, reader))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        """Keep the tail of the output, look for the ready line, tee to ``spec.stdout``."""
        pattern = self.ready.line
        copy = _copy_to(self.spec.stdout)
        try:
            while True:
                try:
                    raw = await stream.readline()
                except ValueError:  # a line longer than the stream's limit: skipped
                    continue
                if not raw:
                    return
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                if copy is not None:
                    copy.write(line + "\n")
                    copy.flush()
                if pattern is not None and self._matched is not None \
                        and not self._matched.done():
                    found = pattern.search(line)
                    if found:
                        self._matched.set_result((line, {k: v for k, v in
                                                         found.groupdict().items() if v}))
        finally:
            if copy is not None:
                copy.close()

    async def _conditions(self) -> tuple[str | None, dict[str, str]]:
        """Wait until every readiness condition holds; the matched line and its groups."""
        ready = self.ready
        line: str | None = None
        groups: dict[str, str] = {}
        if self._matched is not None:
            line, groups = await self._matched
        port = ready.port if ready.port is not None else _int(groups.get("port"))
        if ready.port is not None:
            await wait_until(lambda: port_accepts(ready.host, port))
        if ready.file is not None:
            path = Path(ready.file)
            await wait_until(path.exists)
        return line, groups

    def _endpoint(self, found: tuple[str | None, dict[str, str]]) -> ServiceEndpoint:
        line, groups = found
        ready = self.ready
        port = ready.port if ready.port is not None else _int(groups.get("port"))
        pid = self._proc.pid if self._proc is not None else os.getpid()
        return ServiceEndpoint(uid=self.spec.uid, name=self.spec.name,
                               host=groups.get("host", ready.host), port=port, pid=pid,
                               file=ready.file, line=line, match=groups)

    async def _exit_error(self, ended: asyncio.Future[Any]) -> BaseException:
        with contextlib.suppress(BaseException):
            await ended
        if self._body is not None:  # a function service: its return or its exception
            error = None if self._body.cancelled() else self._body.exception()
            if error is not None and not self.is_ready:
                return error
            exc = ServiceExitedError(self.spec.name, None, repr(error) if error else "",
                                     self.is_ready)
            exc.__cause__ = error
            return exc
        assert self._proc is not None
        return ServiceExitedError(self.spec.name, self._proc.returncode, self.output(),
                                  self.is_ready)

    def output(self) -> str:
        return "\n".join(self.tail)

    # -- stopping --------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the service: the backend's shutdown, a cancel before it was ready (reported
        ``CANCELLED``), or ``flow.stop_service`` once it was (nothing reported: DONE stands)."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _terminate(self, ended: asyncio.Future[Any]) -> None:
        """SIGTERM to the process group, SIGKILL after :attr:`grace` seconds."""
        if self._body is not None:
            self._body.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._body)
            return
        proc = self._proc
        assert proc is not None
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.grace):
                    await asyncio.shield(proc.wait())
            except TimeoutError:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # whatever is left of its group
        with contextlib.suppress(BaseException):
            await asyncio.shield(ended)


async def _both(waited: asyncio.Future[Any], reader: asyncio.Future[None]) -> None:
    await waited
    with contextlib.suppress(Exception):
        await reader


def _copy_to(path: Path | None) -> IO[str] | None:
    """The file a service's output is copied to with ``capture_stdio=True``."""
    if path is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w")


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
