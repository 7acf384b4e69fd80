"""Service tasks on the pilot: an ordinary RADICAL-Pilot executable task, watched from here.

RADICAL-Pilot 1.103 has a service mode (``TASK_SERVICE`` with ``info_pattern``), but its
agent starts services one at a time inside the callback that takes in new tasks, so every task
submitted after a service waits until that service is up: for its whole ``startup_timeout``
when it never is, and for good when it dies first and has none. It also joins the arguments
into one shell string and needs its wrapper script on the task's ``PATH``
(``tools/rp_service_mode.py`` shows all of it). So a service is a plain long-running
executable task, and one asyncio task per service, on the engine's loop, watches it:

- it waits for the command to be launched (``AGENT_EXECUTING``);
- then, within ``ready_timeout``, for the readiness condition: a ``ready_line`` in the
  stdout or stderr file of the task's sandbox, read as it grows; a ``ready_port`` that accepts;
  a ``ready_file`` (relative to the service's working directory) that exists. Each is tried
  again after a backoff, in this task only, never on the engine's scheduling path;
- ready, it reports ``DONE`` with the endpoint, then waits for the task's end: one
  ``FAILED`` with :class:`~asyncflow.ServiceExitedError` if that comes on its own.

Stopping (a cancel, ``flow.stop_service``, the shutdown) ends the task (its agent kills the
command's process group; in a Slurm job, Slurm ends its step: see ``PilotJob.stop``) and
waits for its final state.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncflow.backend import TaskSpec, TaskUpdate
from asyncflow.errors import BackendError, ServiceExitedError, ServiceNotReadyError
from asyncflow.services import Readiness, ServiceEndpoint, port_accepts, wait_until

__all__ = ["Ended", "Service", "unsupported"]

log = logging.getLogger("asyncflow.radical")

_TAIL_LINES = 50
_CANCEL_AGAIN_AFTER = 1.0  # seconds: RADICAL-Pilot can lose a cancel sent during the launch
_STOP_WAIT = 20.0  # seconds a stop waits for the task's final state
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class Ended:
    """How the RADICAL-Pilot task of a service ended."""

    state: str
    exit_code: int | None
    stdout: str
    stderr: str


def unsupported(spec: TaskSpec, sandbox_here: bool, runs_here: bool,
                resource: str) -> str | None:
    """Why this backend cannot watch ``spec``'s readiness from here, or ``None`` if it can.

    A line is read from the task's output files and a file is looked for on this machine's
    filesystem: both need the pilot's sandbox here (a local or shared filesystem). A port on
    the loopback interface is this machine's: it needs the tasks to run here.
    """
    ready = spec.service
    assert ready is not None
    where = f"service {spec.name!r} ({spec.uid})"
    if not sandbox_here:
        for key, value in (("ready_line", ready.line), ("ready_file", ready.file)):
            if value is not None:
                return (f"{where}: {key} is watched on this machine, but the pilot's sandbox "
                        f"on {resource} is not on its filesystem; use ready_port with the "
                        "ready_host of the node it runs on, or no condition (ready once "
                        "launched)")
    if ready.port is not None and ready.host in _LOOPBACK and not runs_here:
        return (f"{where}: ready_port {ready.port} on {ready.host} is this machine's, but the "
                f"pilot's tasks on {resource} run elsewhere; set ready_host to the node the "
                "service runs on")
    return None


class Service:
    """One service task, from its submission to its end. Every method runs on the engine's
    loop; :meth:`launched` and :meth:`ended` are how the backend passes on what
    RADICAL-Pilot said."""

    def __init__(self, spec: TaskSpec, rp_uid: str, sandbox: Path | None,
                 stdio: tuple[str, str], report: Callable[[TaskUpdate], None],
                 cancel: Callable[[], None]) -> None:
        assert spec.service is not None
        self.spec = spec
        self.rp_uid = rp_uid
        # Its folder on this machine, if it is here (RADICAL-Pilot's task.sandbox is only set
        # once the task has ended), and the names of its stdout and stderr files there.
        self.sandbox = sandbox
        self.stdio = stdio
        self.ready: Readiness = spec.service
        self._report = report
        self._cancel = cancel  # ends the task: blocking, so run in a thread
        loop = asyncio.get_running_loop()
        self._launched: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[Ended] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.is_ready = False
        self.task: asyncio.Task[None] | None = None  # run(), held by the backend

    # -- what RADICAL-Pilot says, passed on by the backend ---------------------------------

    def launched(self) -> None:
        if not self._launched.done():
            self._launched.set_result(None)

    def ended(self, end: Ended) -> None:
        if not self._ended.done():
            self._ended.set_result(end)

    # -- the service's own task ------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:  # the loop is going away: leave nothing running, now
            self._cancel()
            raise

    async def _run(self) -> None:
        ended, stopped = self._ended, self._stopped
        await _first(self._launched, ended, stopped)
        if stopped.done():  # cancelled before it was launched
            await self._halt()
            self._report(TaskUpdate.cancelled(self.spec.uid))
            return
        if not ended.done() and not await self._until_ready():
            return
        if self.is_ready:
            await _first(ended, stopped)
            if not ended.done():  # flow.stop_service or the shutdown: nothing to report
                await self._halt()
                return
        self._exited(ended.result())

    async def _until_ready(self) -> bool:
        """Wait for the readiness condition, within ``ready_timeout`` of the launch; report
        ``DONE`` when it holds. ``False`` if the task's fate is reported otherwise (not ready in
        time, cancelled, a check that cannot be made); ``True`` if ready, or if it ended."""
        spec, ready = self.spec, self.ready
        conditions = asyncio.ensure_future(self._conditions())
        try:
            async with asyncio.timeout(ready.timeout):
                await _first(conditions, self._ended, self._stopped)
        except TimeoutError:
            conditions.cancel()
            await self._halt()
            self._report(TaskUpdate.failed(spec.uid, ServiceNotReadyError(
                spec.name, ready.timeout, ready.describe(), self._output())))
            return False
        if conditions.done():
            error = conditions.exception()
            if error is None:
                self._ready(conditions.result())
                return True
            await self._halt()
            self._report(TaskUpdate.failed(spec.uid, error))
            return False
        conditions.cancel()
        if self._ended.done():
            return True
        await self._halt()  # cancelled before it was ready
        self._report(TaskUpdate.cancelled(spec.uid))
        return False

    def _exited(self, end: Ended) -> None:
        """The task ended on its own: before it was ready, or after."""
        ready = self.ready
        if not self.is_ready:
            # The ready line may be among the last things it printed: ready, then ended.
            found = self._line_in(end)
            if found is not None and ready.port is None and ready.file is None:
                self._ready(found)
        self._report(TaskUpdate.failed(self.spec.uid, ServiceExitedError(
            self.spec.name, end.exit_code, self._output(end), self.is_ready)))

    def _ready(self, found: tuple[str | None, dict[str, str]]) -> None:
        self.is_ready = True
        self._report(TaskUpdate.done(self.spec.uid, self._endpoint(found)))

    async def _conditions(self) -> tuple[str | None, dict[str, str]]:
        """Wait until every readiness condition holds; the matched line and its groups."""
        ready, sandbox = self.ready, self.sandbox
        line: str | None = None
        groups: dict[str, str] = {}
        if ready.line is not None:
            if sandbox is None:  # unsupported() refuses a remote sandbox before this
                raise BackendError(f"service {self.spec.name!r} ({self.spec.uid}): its "
                                   "sandbox is not on this machine, so its output cannot be "
                                   "watched for ready_line")
            line, groups = await self._watch_output(sandbox)
        if ready.port is not None:
            port = ready.port
            await wait_until(lambda: port_accepts(ready.host, port))
        if ready.file is not None:
            await wait_until(self._file().exists)
        return line, groups

    async def _watch_output(self, sandbox: Path) -> tuple[str, dict[str, str]]:
        """Follow the task's stdout and stderr files until a line matches ``ready_line``."""
        pattern = self.ready.line
        assert pattern is not None
        streams = [_Follower(sandbox / name) for name in self.stdio]
        delay = _FIRST_LOOK
        while True:
            grew = False
            for stream in streams:
                for line in stream.new_lines():
                    grew = True
                    self.tail.append(line)
                    found = pattern.search(line)
                    if found:
                        return line, {k: v for k, v in found.groupdict().items() if v}
            # Fresh output: look again soon; none: back off, up to half a second.
            delay = _FIRST_LOOK if grew else min(2 * delay, _LAST_LOOK)
            await asyncio.sleep(delay)

    def _file(self) -> Path:
        """``ready_file``; a relative one is in the service's working directory."""
        assert self.ready.file is not None
        path = Path(self.ready.file)
        cwd = Path(self.spec.cwd) if self.spec.cwd is not None else self.sandbox
        return path if path.is_absolute() or cwd is None else cwd / path

    def _line_in(self, end: Ended) -> tuple[str, dict[str, str]] | None:
        pattern = self.ready.line
        if pattern is None:
            return None
        for line in (*end.stdout.splitlines(), *end.stderr.splitlines()):
            found = pattern.search(line)
            if found:
                return line, {k: v for k, v in found.groupdict().items() if v}
        return None

    def _endpoint(self, found: tuple[str | None, dict[str, str]]) -> ServiceEndpoint:
        line, groups = found
        ready = self.ready
        port = ready.port if ready.port is not None else _int(groups.get("port"))
        info: dict[str, Any] = {"radical_uid": self.rp_uid}
        if self.sandbox is not None:
            info["sandbox"] = str(self.sandbox)
        return ServiceEndpoint(
            uid=self.spec.uid, name=self.spec.name, host=groups.get("host", ready.host),
            port=port, file=None if ready.file is None else str(self._file()),
            line=line, match=groups, info=info)

    def _output(self, end: Ended | None = None) -> str:
        if end is None:
            return "\n".join(self.tail)
        return "\n".join([*end.stdout.splitlines()[-_TAIL_LINES:],
                          *end.stderr.splitlines()[-_TAIL_LINES:]])

    # -- stopping --------------------------------------------------------------------------

    async def stop(self) -> bool:
        """Stop the service: a cancel before it is ready (reported ``CANCELLED``), or
        ``flow.stop_service`` and the shutdown once it is (nothing reported). ``False`` if it
        had ended already."""
        task = self.task
        if task is None or task.done():
            return False
        if not self._stopped.done():
            self._stopped.set_result(None)
        await asyncio.shield(task)
        return True

    async def _halt(self) -> None:
        """End the task and wait for its final state, asking again each second (a cancel that
        reaches RADICAL-Pilot's agent during the launch is lost)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_WAIT
        while not self._ended.done():
            await asyncio.to_thread(self._cancel)
            try:
                async with asyncio.timeout(_CANCEL_AGAIN_AFTER):
                    await asyncio.shield(self._ended)
            except TimeoutError:
                if loop.time() > deadline:
                    log.warning("radical backend: service %r (%s) did not stop within %g s of "
                                "its cancellation", self.spec.name, self.spec.uid, _STOP_WAIT)
                    return


_FIRST_LOOK, _LAST_LOOK = 0.02, 0.5  # seconds between looks at a service's output files


class _Follower:
    """The complete lines a growing file gained since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except OSError:  # not created yet
            return []
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in lines]


async def _first(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
