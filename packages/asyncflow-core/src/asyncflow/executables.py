"""Running an executable task's command: shared by backends so they mean the same thing.

``run`` (asyncio, on the engine's loop) and ``run_blocking`` (a worker thread or a remote
worker) both start the command in a new process group, so cancelling or timing out kills the
command and everything it started; both turn the outcome into the task's value or a
precise error with :func:`outcome`. :func:`argv` turns an executable task's command string
into the arguments it runs with when no shell was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

from asyncflow.backend import TaskSpec
from asyncflow.errors import ExecutableFailedError, TaskTimeoutError

__all__ = ["CommandOutput", "argv", "outcome", "run", "run_blocking"]


class CommandOutput(str):
    """The value of an executable task: its stdout as text, which also tells how it ran.

    It is the ``str`` a task's future resolves to (a later task receives it as one), with
    ``stdout``, ``stderr`` and ``exit_code`` attributes. With ``capture_stdio`` the text and
    ``stdout`` are the stdout file's path and ``stderr`` the stderr file's.
    """

    stdout: str
    stderr: str
    exit_code: int

    def __new__(cls, stdout: str, stderr: str = "", exit_code: int = 0) -> CommandOutput:
        self = super().__new__(cls, stdout)
        self.stdout, self.stderr, self.exit_code = stdout, stderr, exit_code
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.stdout, self.stderr, self.exit_code))

# What only a shell understands, longest first; "2>&1" is a digit before ">&".
_OPERATOR = re.compile(r"\d?>&\d?|>>|&&|\|\||[<>|;&]")
_QUOTES = {"'": "'", '"': '"'}


def argv(command: str, task: str) -> tuple[str, ...]:
    """The arguments of ``command`` run without a shell, split as a shell would.

    Raises ``ValueError`` naming ``task`` when the quotes do not balance, or when the command
    holds an unquoted shell operator (``>``, ``|``, ``&&``, ...): without a shell it would be
    passed to the program as text, and the command would quietly do something else.
    """
    try:
        parts = tuple(shlex.split(command))
    except ValueError as exc:  # shlex says only "No closing quotation"
        raise ValueError(f"executable task {task!r}: cannot split the command {command!r} "
                         f"into arguments: {str(exc).lower()}") from None
    operator = _unquoted_operator(command)
    if operator is not None:
        raise ValueError(
            f"executable task {task!r}: the command {command!r} holds the shell operator "
            f"{operator!r}, which only a shell understands, and commands run without a shell "
            "unless asked. Pass task_description={'shell': True} to run it with /bin/sh, or "
            "quote the operator to pass it to the program as text.")
    return parts


def _unquoted_operator(command: str) -> str | None:
    """The first shell operator outside quotes and not escaped by a backslash, if any."""
    quote: str | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if char == "\\" and quote != "'":
            index += 2  # the next character is literal
            continue
        if quote is not None:
            if char == quote:
                quote = None
        elif char in _QUOTES:
            quote = char
        else:
            start = index - 1 if index and command[index - 1].isdigit() and (
                index == 1 or command[index - 2].isspace()) else index
            match = _OPERATOR.match(command, start)
            if match is not None and match.end() > index:
                return match.group()
        index += 1
    return None


def _env(spec: TaskSpec) -> dict[str, str] | None:
    if not spec.env:
        return None
    return {**os.environ, **{k: str(v) for k, v in spec.env.items()}}


def _streams(spec: TaskSpec) -> tuple[IO[bytes] | int, IO[bytes] | int]:
    if spec.stdout is None:
        return subprocess.PIPE, subprocess.PIPE
    Path(spec.stdout).parent.mkdir(parents=True, exist_ok=True)
    assert spec.stderr is not None
    return open(spec.stdout, "wb"), open(spec.stderr, "wb")


def outcome(spec: TaskSpec, returncode: int, stdout: bytes | str | None,
            stderr: bytes | str | None) -> Any:
    """The task's value (stdout text, or the stdout path when captured), or raise
    :class:`ExecutableFailedError` with the exit code and the tail of stderr."""
    if spec.stdout is not None:
        stdout = None
        with contextlib.suppress(OSError):
            stderr = Path(spec.stderr).read_bytes() if spec.stderr else b""
    out = stdout.decode(errors="replace") if isinstance(stdout, bytes) else (stdout or "")
    err = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    if returncode != 0:
        raise ExecutableFailedError(spec.name, spec.command, returncode, err, out)
    if spec.stdout is not None:
        return CommandOutput(str(spec.stdout), str(spec.stderr), returncode)
    return CommandOutput(out, err, returncode)


def _not_started(spec: TaskSpec, exc: OSError) -> ExecutableFailedError:
    # Not found, not executable: what a shell reports as exit code 127 or 126.
    code = 127 if isinstance(exc, FileNotFoundError) else 126
    return ExecutableFailedError(spec.name, spec.command, code, str(exc))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run(spec: TaskSpec) -> Any:
    """Run ``spec.command`` as a child of this process, without blocking the loop.

    Cancelling the calling task kills the command's process group; ``spec.timeout`` does the
    same and raises :class:`TaskTimeoutError`.
    """
    out, err = _streams(spec)
    starting = asyncio.ensure_future(_start(spec, out, err))
    try:
        proc = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # The command runs before asyncio has finished wiring its pipes, and a cancel in
        # between would kill only the command itself, not what it started: finish the start,
        # then take the whole process group down.
        with contextlib.suppress(Exception):
            started = await starting
            _kill_group(started.pid)
            await started.wait()
        _close(out, err)
        raise
    except OSError as exc:
        _close(out, err)
        raise _not_started(spec, exc) from exc
    try:
        async with asyncio.timeout(spec.timeout):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise TaskTimeoutError(spec.name, spec.timeout or 0) from None
    except BaseException:  # cancelled: take the whole process group down with us
        _kill_group(proc.pid)
        await asyncio.shield(proc.wait())
        raise
    finally:
        _close(out, err)
    _kill_group(proc.pid)  # anything the command left running in its group
    assert proc.returncode is not None
    return outcome(spec, proc.returncode, stdout, stderr)


async def _start(spec: TaskSpec, out: IO[bytes] | int,
                 err: IO[bytes] | int) -> asyncio.subprocess.Process:
    if spec.shell:
        assert isinstance(spec.command, str)
        return await asyncio.create_subprocess_shell(
            spec.command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=spec.cwd,
            env=_env(spec), start_new_session=True)
    return await asyncio.create_subprocess_exec(
        *spec.command or (), stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=spec.cwd,
        env=_env(spec), start_new_session=True)


def run_blocking(spec: TaskSpec) -> Any:
    """Run ``spec.command`` and wait for it in this thread (for worker threads and processes)."""
    out, err = _streams(spec)
    try:
        proc = subprocess.Popen(
            spec.command or (), shell=spec.shell, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, cwd=spec.cwd, env=_env(spec), start_new_session=True)
    except OSError as exc:
        _close(out, err)
        raise _not_started(spec, exc) from exc
    try:
        stdout, stderr = proc.communicate(timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        raise TaskTimeoutError(spec.name, spec.timeout or 0) from None
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        _close(out, err)
    _kill_group(proc.pid)
    return outcome(spec, proc.returncode, stdout, stderr)


def _close(*streams: IO[bytes] | int) -> None:
    for stream in streams:
        if not isinstance(stream, int):
            stream.close()
