"""Service tasks: long-running tasks whose future resolves when the service is *ready*.

``@flow.executable_task(service=True)`` starts a command that keeps running (a database, a
model server, a broker). Its future resolves once the readiness condition in its
``task_description`` holds, with a :class:`ServiceEndpoint` as the result, and the service
runs on until the engine shuts down, which stops it. The conditions (any combination; all
must hold, and none means ready as soon as it started):

==================  ==========================================================================
``ready_port``      a TCP port that accepts connections (on ``ready_host``, ``127.0.0.1``)
``ready_file``      a file that exists
``ready_line``      a regular expression matching a line of its output (stdout or stderr);
                    named groups land in :attr:`ServiceEndpoint.match`, and a group named
                    ``port`` sets :attr:`ServiceEndpoint.port`
``ready_timeout``   seconds to wait for the conditions (default 60), then the service is
                    stopped and the task fails with :class:`~asyncflow.ServiceNotReadyError`
==================  ==========================================================================

A backend runs service tasks when it declares the ``services`` capability; the engine
refuses them on any other backend before submission. This module is the part backends share:
the parsed condition each :class:`~asyncflow.TaskSpec` carries in ``spec.service``, the
result type, and the two checks a watcher repeats (:func:`wait_until`, :func:`port_accepts`).

Once a service is ready, ``await flow.stop_service(future)`` stops it before the shutdown
does; the engine asks its backend with ``cancel(uid)``, which for a ready service stops it
and reports nothing more (its ``DONE`` stands).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["READY_KEYS", "Readiness", "ServiceEndpoint", "port_accepts", "readiness",
           "wait_until"]

READY_KEYS = frozenset({"ready_port", "ready_host", "ready_file", "ready_line",
                        "ready_timeout"})
"""The ``task_description`` keys of a service's readiness condition."""

DEFAULT_TIMEOUT = 60.0
_FIRST_RETRY, _LAST_RETRY = 0.02, 0.5  # backoff of the repeated checks (seconds)


@dataclass(frozen=True, slots=True)
class Readiness:
    """When a service counts as ready: what ``spec.service`` holds for a service task."""

    port: int | None = None
    host: str = "127.0.0.1"
    file: str | None = None
    line: re.Pattern[str] | None = None
    timeout: float = DEFAULT_TIMEOUT

    def describe(self) -> str:
        """The condition in words, for messages."""
        parts = []
        if self.port is not None:
            parts.append(f"port {self.host}:{self.port} accepting")
        if self.file is not None:
            parts.append(f"file {self.file!r} present")
        if self.line is not None:
            parts.append(f"an output line matching {self.line.pattern!r}")
        return " and ".join(parts) or "started"


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """Where a ready service is: the result of a service task. Pass it to the tasks that
    talk to the service."""

    uid: str
    """The service task's uid."""
    name: str
    host: str
    port: int | None = None
    pid: int | None = None
    """The service's process (the leader of its process group), where the backend knows it."""
    file: str | None = None
    """The ``ready_file`` that appeared."""
    line: str | None = None
    """The output line that matched ``ready_line``."""
    match: Mapping[str, str] = field(default_factory=dict)
    """The named groups of that match."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Whatever else the backend knows (RADICAL-Pilot's service info, ...)."""

    @property
    def address(self) -> str | None:
        """``host:port``, when there is a port."""
        return None if self.port is None else f"{self.host}:{self.port}"


def readiness(task: str, description: Mapping[str, Any]) -> Readiness:
    """The readiness condition of service task ``task`` from its ``task_description``;
    a ``ValueError`` or ``TypeError`` naming the task and the key at fault otherwise."""
    port = description.get("ready_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ValueError(f"service {task!r}: ready_port must be a TCP port number (1-65535), "
                         f"not {port!r}")
    host = description.get("ready_host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise TypeError(f"service {task!r}: ready_host must be a host name, not {host!r}")
    file = description.get("ready_file")
    if file is not None and not isinstance(file, str):
        file = str(file)  # a Path
    line = description.get("ready_line")
    pattern = None
    if line is not None:
        if not isinstance(line, str):
            raise TypeError(f"service {task!r}: ready_line must be a regular expression "
                            f"(str), not {line!r}")
        try:
            pattern = re.compile(line)
        except re.error as exc:
            raise ValueError(f"service {task!r}: ready_line {line!r} is not a valid regular "
                             f"expression: {exc}") from None
    timeout = description.get("ready_timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"service {task!r}: ready_timeout must be a positive number of "
                         f"seconds, not {timeout!r}")
    return Readiness(port=port, host=host, file=file, line=pattern, timeout=float(timeout))


async def wait_until(check: Callable[[], Any]) -> None:
    """Try ``check`` (a coroutine function or a plain one) until it is true, backing off from
    20 ms, doubling, to 0.5 s. Run it in the service's own watcher task: nothing else waits."""
    delay = _FIRST_RETRY
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(delay)
        delay = min(2 * delay, _LAST_RETRY)


async def port_accepts(host: str, port: int | None) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted (closed again at once)."""
    if port is None:
        return False
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
