"""``InputFile``/``OutputFile`` arguments as RADICAL-Pilot staging directives.

Every task runs in a sandbox of its own on the pilot (``<pilot sandbox>/<uid>/``), or in its
``cwd``. A relative ``OutputFile`` stays where its task wrote it; a later task that reads it
as an ``InputFile`` gets it linked into its own folder under the same relative path, so both
commands name the file the same way. A local file that no task produced is copied in. An
absolute path is a path on a shared filesystem and is used as it is.
"""

from __future__ import annotations

import os
from typing import Any

from asyncflow.backend import TaskSpec

__all__ = ["LINK", "TRANSFER", "FileLedger"]

# radical.pilot's staging actions (rp.LINK, rp.TRANSFER); the tests check they still match.
LINK = "Link"
TRANSFER = "Transfer"


class FileLedger:
    """Where on the pilot each relative ``OutputFile`` of a submitted task is found."""

    def __init__(self) -> None:
        self._made: dict[str, str] = {}  # OutputFile path -> staging URL of the file

    def input_staging(self, spec: TaskSpec) -> list[dict[str, Any]]:
        """Directives that put the task's input files where its command looks for them.

        Raises:
            FileNotFoundError: an input is neither an earlier task's output nor a local file.
        """
        directives = []
        for file in spec.input_files:
            path = os.fspath(file)
            made = self._made.get(path)
            if os.path.isabs(path) and made is None:
                continue  # a shared-filesystem path: the task reads it where it is
            target = _place(path, spec.cwd, "task:///")
            if made is not None:
                directives.append({"source": made, "target": target, "action": LINK})
            elif os.path.exists(path):
                directives.append({"source": os.path.abspath(path), "target": target,
                                   "action": TRANSFER})
            else:
                raise FileNotFoundError(
                    f"task {spec.name!r} ({spec.uid}): input file {path!r} is neither a local "
                    f"file (looked in {os.getcwd()}) nor an OutputFile of an earlier task")
        return directives

    def record_outputs(self, spec: TaskSpec, uid: str) -> None:
        """Remember where the relative output files of task ``uid`` (its RADICAL-Pilot uid)
        will be."""
        for file in spec.output_files:
            path = os.fspath(file)
            if not os.path.isabs(path):
                self._made[path] = _place(path, spec.cwd, f"pilot:///{uid}/")


def _place(path: str, cwd: str | None, sandbox: str) -> str:
    """Where a relative ``path`` of a task is: in its ``cwd`` if it has one, else in its
    sandbox (``sandbox`` is the URL of that folder, ending in ``/``)."""
    if cwd is None:
        return sandbox + path
    folder = cwd if os.path.isabs(cwd) else sandbox + cwd
    return f"{folder.rstrip('/')}/{path}"
