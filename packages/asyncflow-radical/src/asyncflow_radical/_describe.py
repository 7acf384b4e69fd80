"""A :class:`~asyncflow.backend.TaskSpec` as a RADICAL-Pilot task description (a dict).

Two quirks of RADICAL-Pilot's launch script shape this module. It writes each argument in
double quotes, so ``$`` and backquotes in an argument would be expanded by the shell; and it
writes environment values raw, so a quote in a value would break the script. Environment
values are therefore escaped, and an argument that holds ``$`` or a backquote travels in an
environment variable that the argument then names: the command sees exactly its argv.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from asyncflow.backend import TaskKind, TaskSpec
from asyncflow.services import READY_KEYS
from asyncflow_radical import _remote
from asyncflow_radical._staging import TRANSFER

__all__ = ["MODE_EXECUTABLE", "MODE_FUNCTION", "describe", "stdio_names"]

# radical.pilot's task modes (rp.TASK_EXECUTABLE, rp.TASK_FUNCTION); the tests check them.
MODE_EXECUTABLE = "task.executable"
MODE_FUNCTION = "task.function"

# Fields this module sets from the spec; a task_description may not override them.
_OWNED = frozenset({"uid", "mode", "executable", "arguments", "function", "args", "kwargs",
                    "raptor_id", "command", "code"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EXPANDS = re.compile(r"[$`]")
_PLAIN_WORD = re.compile(r"[\w@%+=:,./-]+\Z")  # needs no quoting at all (the executable)


def describe(spec: TaskSpec, fields: Iterable[str], *, uid: str, raptor_id: str | None = None,
             input_staging: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The task description of ``spec``.

    Args:
        spec: the task.
        fields: the field names ``rp.TaskDescription`` accepts.
        uid: its RADICAL-Pilot uid.
        raptor_id: the RAPTOR master that runs function tasks.
        input_staging: directives for the task's input files.

    Raises:
        ValueError: a ``task_description`` key RADICAL-Pilot does not know, or one this
            backend sets itself, or an environment variable name the shell cannot export.
    """
    td = _passthrough(spec, frozenset(fields))
    td["uid"] = uid
    td.setdefault("name", spec.name)
    if spec.cwd is not None:
        # Not the task's `sandbox`: RADICAL-Pilot would fill the user's folder with its files.
        td["pre_exec"] = [f"cd {shlex.quote(spec.cwd)}", *td.get("pre_exec", ())]
    if spec.timeout is not None:
        td["timeout"] = float(spec.timeout)
    if input_staging:
        td["input_staging"] = [*td.get("input_staging", ()), *input_staging]
    if spec.kind is TaskKind.FUNCTION:
        assert spec.function is not None and raptor_id is not None
        td["mode"] = MODE_FUNCTION
        td["raptor_id"] = raptor_id
        td["function"] = _function(spec)
        module = getattr(spec.function, "__module__", None)
        if module and module != "__main__":  # the worker imports it once, not in every task
            td["metadata"] = {**td.get("metadata", {}), "asyncflow_module": module}
        return td  # RAPTOR sets a function task's environment without a shell: no escaping

    env = {**td.get("environment", {}), **(spec.env or {})}
    td["mode"] = MODE_EXECUTABLE
    if spec.shell:
        assert isinstance(spec.command, str)
        argv = ["/bin/sh", "-c", spec.command]
    else:
        argv = list(spec.command or ())
    executable = argv[0]
    if not _PLAIN_WORD.match(executable):  # written unquoted: let the shell expand a variable
        executable = f'"{_via_env(executable, 0, env)}"'
    td["executable"] = executable
    td["arguments"] = [_via_env(arg, i, env) if _EXPANDS.search(arg) else arg
                       for i, arg in enumerate(argv[1:], start=1)]
    td["environment"] = {_check_name(spec, key): _escape(str(value))
                         for key, value in env.items()}
    if spec.stdout is not None:  # capture_stdio: bring the files back next to the client
        out, err = stdio_names(td)
        td["output_staging"] = [
            *td.get("output_staging", ()),
            {"source": f"task:///{out}", "target": os.fspath(spec.stdout), "action": TRANSFER},
            {"source": f"task:///{err}", "target": os.fspath(spec.stderr or ""),
             "action": TRANSFER},
        ]
    return td


def stdio_names(td: Mapping[str, Any]) -> tuple[str, str]:
    """The file names of the task's stdout and stderr in its sandbox."""
    uid = td["uid"]
    return td.get("stdout") or f"{uid}.out", td.get("stderr") or f"{uid}.err"


def _passthrough(spec: TaskSpec, fields: frozenset[str]) -> dict[str, Any]:
    td: dict[str, Any] = {}
    for key, value in spec.description.items():
        if spec.service is not None and key in READY_KEYS:  # the backend watches these
            continue
        if key in _OWNED:
            raise ValueError(f"task {spec.name!r} ({spec.uid}): task_description key {key!r} "
                             "is set by the radical backend from the task itself")
        if key not in fields:
            raise ValueError(f"task {spec.name!r} ({spec.uid}): task_description key {key!r} "
                             "is not a field of radical.pilot's TaskDescription")
        # Copies, so that lists and dicts shared between calls are never changed in place.
        if isinstance(value, list | tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        td[key] = value
    return td


def _function(spec: TaskSpec) -> str:
    import radical.pilot as rp  # imported by start() already; here for its PythonTask

    payload = _remote.pack(spec.function, spec.args, spec.kwargs)  # type: ignore[arg-type]
    return rp.PythonTask(_remote.call, (payload,), {})  # type: ignore[no-any-return]


def _via_env(arg: str, index: int, env: dict[str, str]) -> str:
    name = f"ASYNCFLOW_ARG_{index}"
    env[name] = arg
    return f"${{{name}}}"


def _escape(value: str) -> str:
    # RADICAL-Pilot writes `export NAME="<value>"`: make the shell read the value back as is.
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return value


def _check_name(spec: TaskSpec, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"task {spec.name!r} ({spec.uid}): environment variable name {name!r} "
                         "cannot be exported by a shell")
    return name
