"""Fixtures shared by the cross-package tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _probe import install

import asyncflow


@pytest.fixture(scope="session")
def probe_plugin(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Register the probe plugin (see ``_probe.py``) in this process through the public door."""
    if "probe" in asyncflow.registry():
        return
    site = install(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    try:
        import asyncflow_probe  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(site))
    asyncflow.register(asyncflow_probe, name="asyncflow_probe")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as the cwd, no ASYNCFLOW_* variables, a private user config folder,
    and a repository root above the project so the pyproject search stays inside."""
    for variable in list(os.environ):
        if variable.startswith("ASYNCFLOW_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / ".git").mkdir()
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
