"""A small backend plugin for the configuration and CLI tests, installed like pip would:
a module plus a ``*.dist-info`` folder with its ``asyncflow`` entry point, on a path.

Its tasks return the options the backend was built with, so a test sees which
configuration source won by running a workflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = '''\
from typing import Literal

import asyncflow
from asyncflow import ExecutionBackend, TaskUpdate


class ProbeExecutionBackend(ExecutionBackend):
    name = "probe"

    def __init__(self, *, workers: int = 1, label: str = "default", ratio: float = 1.0,
                 mode: Literal["fast", "slow"] = "fast", tags: list[str] | None = None) -> None:
        super().__init__()
        self.options = {"workers": workers, "label": label, "ratio": ratio, "mode": mode,
                        "tags": tags}

    async def start(self) -> None:
        pass

    async def submit(self, tasks):
        for spec in tasks:
            self.report(TaskUpdate.done(spec.uid, dict(self.options)))

    async def cancel(self, uid: str) -> bool:
        return False

    async def shutdown(self) -> None:
        pass


@asyncflow.hookimpl
def asyncflow_register_backends(registry):
    registry.add(ProbeExecutionBackend)
'''


def install(site: Path, module: str = "asyncflow_probe", source: str = PROBE,
            dist: str = "asyncflow-probe", entry: str = "probe") -> Path:
    """Install the plugin ``dist`` (entry point ``entry`` -> ``module``) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[asyncflow]\n{entry} = {module}\n")
    return site


def clean_environment(tmp_path: Path, site: Path | None = None) -> dict[str, str]:
    """This process's environment without ASYNCFLOW_* variables, with a private user config
    folder, and ``site`` on the path when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site),
                                                          env.get("PYTHONPATH", "")]))
    return env


def asyncflow_command() -> str:
    """The ``asyncflow`` console script installed beside this interpreter."""
    script = Path(sys.executable).parent / "asyncflow"
    assert script.exists(), f"the asyncflow console script is not installed at {script}"
    return str(script)


def run_asyncflow(*args: str, cwd: Path, env: dict[str, str],
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``asyncflow ARGS`` as a user types it, in ``cwd``."""
    return subprocess.run([asyncflow_command(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
