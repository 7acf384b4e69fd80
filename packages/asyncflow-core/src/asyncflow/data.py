"""Files as task arguments: ``OutputFile`` names a file a task writes, ``InputFile`` one it
reads. Backends that declare ``file_staging`` move them between task sandboxes; elsewhere they
are plain paths (their ``str()``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InputFile", "OutputFile"]


@dataclass(frozen=True)
class _File(os.PathLike[str]):
    path: str

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", os.fspath(path))

    @property
    def name(self) -> str:
        """The file's base name: where it lands in a task's sandbox."""
        return Path(self.path).name

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


class InputFile(_File):
    """A file a task reads: a local path staged in, or the name of another task's output."""


class OutputFile(_File):
    """A file a task writes, made available to tasks that read it as an ``InputFile``."""
