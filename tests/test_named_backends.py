"""Issue 12, point 2: two named entries of one backend kind in configuration (``kind =``),
from files, environment variables and ``asyncflow config``; and an upstream-style script,
with its logging helper and backends built upstream's way, run unchanged by Python."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _probe import clean_environment, install, run_asyncflow, write

from asyncflow import WorkflowEngine

pytestmark = pytest.mark.usefixtures("probe_plugin", "project")

TWO_PROBES = """\
backend = ["fast", "slow"]
[backends.fast]
kind = "probe"
label = "fast"
[backends.slow]
kind = "probe"
label = "slow"
workers = 2
"""


async def test_two_named_entries_of_one_kind_route_by_name(project: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    write(project / "asyncflow.toml", TWO_PROBES)
    monkeypatch.setenv("ASYNCFLOW_BACKENDS__SLOW__WORKERS", "7")
    flow = await WorkflowEngine.create()
    try:
        assert list(flow.backends) == ["fast", "slow"]
        fast = await flow.function_task(len)("x")
        slow = await flow.function_task(backend="slow")(len)("x")
        assert (fast["label"], fast["workers"]) == ("fast", 1)
        assert (slow["label"], slow["workers"]) == ("slow", 7), "the variable wins"
    finally:
        await flow.shutdown()


def test_asyncflow_config_checks_named_entries(project: Path, tmp_path: Path) -> None:
    env = clean_environment(tmp_path, install(tmp_path / "site"))
    write(project / "asyncflow.toml", TWO_PROBES)
    done = run_asyncflow("config", cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert "[backends.slow]\n" in done.stdout and "not installed" not in done.stdout
    write(project / "asyncflow.toml", TWO_PROBES.replace("workers = 2", "wrokers = 2"))
    done = run_asyncflow("config", cwd=project, env=env)
    assert done.returncode == 2
    assert "'wrokers' (did you mean 'workers'?)" in done.stderr


UPSTREAM_STYLE = """\
import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, NoopExecutionBackend, WorkflowEngine
from radical.asyncflow.logging import init_default_logger

logger = init_default_logger(logging.INFO)


async def main():
    local = await ConcurrentExecutionBackend(ThreadPoolExecutor(2), name="local")
    flow = await WorkflowEngine.create(backend=[local, NoopExecutionBackend(name="ai")],
                                       implicit_data=True)

    @flow.executable_task
    async def greet(task_description={"shell": True}):
        return '/bin/echo "I got executed at" && /bin/echo now'

    @flow.function_task(backend="ai")
    async def ask(text):
        return text

    @flow.function_task
    async def combine(a, b):
        return f"{a.strip()} | {b}"

    greeting = greet()
    print(await combine(greeting, ask("x")))
    print(greeting.task["exit_code"], repr(greeting.task["stdout"]))
    try:
        await flow.executable_task(lambda: "sh -c 'exit 2'")()
    except RuntimeError:
        print("caught as RuntimeError")
    await flow.shutdown()


asyncio.run(main())
"""


def test_an_upstream_style_script_runs_unchanged(tmp_path: Path) -> None:
    script = write(tmp_path / "upstream_style.py", UPSTREAM_STYLE)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=clean_environment(tmp_path), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == textwrap.dedent("""\
        I got executed at
        now | Dummy Output
        0 'I got executed at\\nnow\\n'
        caught as RuntimeError
        """)
