"""The processes of this machine, as a test sees them: which are alive, and waiting for an end.

A backend's tests check that what it started is gone: after a shutdown, a cancel, a script
that forgot ``shutdown()``. These read Linux's ``/proc`` (no other dependency), and
:func:`ended` waits on a pidfd, so a test awaits the very process instead of polling it::

    from asyncflow.testing.processes import ended

    async def test_cancel_ends_the_command(flow):
        ...
        assert await ended([pid], within=30) == []
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Process", "alive", "children", "ended", "processes", "session_processes"]


@dataclass(frozen=True, slots=True)
class Process:
    """One line of the process table."""

    pid: int
    ppid: int
    session: int
    state: str  # "R", "S", ..., "Z" for a zombie
    command: str  # its command line, at most 200 characters


def processes() -> list[Process]:
    """Every process of this machine that can be read now (one that ends meanwhile is left
    out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        # Fields after the name (in parentheses, and it may hold spaces): state, ppid, pgrp,
        # session, ...
        state, ppid, _, session = stat.rpartition(")")[2].split()[:4]
        text = command.replace(b"\0", b" ").decode(errors="replace").strip()
        found.append(Process(int(entry), int(ppid), int(session), state, text[:200]))
    return found


def session_processes(sid: int) -> dict[int, str]:
    """The live (not zombie) processes of session ``sid``: pid -> command line."""
    return {p.pid: p.command for p in processes() if p.session == sid and p.state != "Z"}


def children(pid: int | None = None) -> dict[int, str]:
    """The child processes of ``pid`` (default: this process), zombies included:
    pid -> ``"[state] command line"``."""
    parent = os.getpid() if pid is None else pid
    return {p.pid: f"[{p.state}] {p.command}" for p in processes() if p.ppid == parent}


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def ended(pids: Iterable[int | str], within: float) -> list[int]:
    """Wait up to ``within`` seconds for processes ``pids`` to end; those still running.

    Each is watched through a pidfd, which becomes readable when the process ends (a zombie
    has ended), so nothing is polled.
    """
    loop = asyncio.get_running_loop()
    waits: dict[int, asyncio.Future[None]] = {}
    fds: dict[int, int] = {}
    for pid in map(int, pids):
        try:
            fds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        done = waits[pid] = loop.create_future()
        loop.add_reader(fds[pid], _settle, done)
    try:
        if waits:
            await asyncio.wait(waits.values(), timeout=within)
        return [pid for pid, done in waits.items() if not done.done()]
    finally:
        for fd in fds.values():
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
