"""Issue 2, point 8: SIGINT and SIGTERM shut the engine down cleanly, then take their normal
effect; handlers live on the main thread's loop only and are restored at shutdown.

The signal tests run a real script in a child process and send it a real signal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from loop_backend import LoopBackend

from asyncflow import WorkflowEngine
from asyncflow._kernel import signals as _signals

SCRIPT = """
import asyncio, os, signal, sys
import asyncflow
from loop_backend import LoopBackend

SIG, FROM_TASK = signal.{signal}, {from_task}


class Backend(LoopBackend):
    async def shutdown(self):
        await super().shutdown()
        print("backend shut down", flush=True)


class Watch:
    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task, new):
        if new == "RUNNING":
            if FROM_TASK:
                os.kill(os.getpid(), SIG)
            else:
                print("ready", flush=True)

    @asyncflow.hookimpl
    def asyncflow_engine_stopped(self, error):
        print("engine stopped:", type(error).__name__, flush=True)


asyncflow.register(Watch())


async def main():
    flow = await asyncflow.WorkflowEngine.create(backend=Backend())

    @flow.function_task
    async def long():
        await asyncio.sleep(600)  # simulated work that the signal interrupts

    try:
        await long()
    finally:
        print("main saw", sys.exc_info()[0].__name__, flush=True)


asyncio.run(main())
print("asyncio.run returned", flush=True)
"""


def run_until_signal(sig: signal.Signals, from_task: bool) -> subprocess.CompletedProcess[str]:
    """Run the script; send ``sig`` from the parent once the task runs, or let the task send
    it to its own process."""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests),
                                                        os.environ.get("PYTHONPATH", "")])}
    code = SCRIPT.format(signal=sig.name, from_task=from_task)
    with subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            first = "" if from_task else child.stdout.readline()
            if not from_task:
                assert first == "ready\n", child.stderr and child.stderr.read()
                child.send_signal(sig)
            out, err = child.communicate(timeout=60)
        finally:
            child.kill()  # no-op once it has exited; never leave it behind
    return subprocess.CompletedProcess(child.args, child.returncode, first + out, err)


@pytest.mark.parametrize("from_task", [False, True], ids=["from-parent", "from-task"])
def test_sigint_shuts_down_cleanly_then_raises_keyboard_interrupt(from_task: bool) -> None:
    result = run_until_signal(signal.SIGINT, from_task)
    lines = result.stdout.splitlines()
    assert "backend shut down" in lines and "engine stopped: KeyboardInterrupt" in lines
    assert lines.index("backend shut down") < lines.index("engine stopped: KeyboardInterrupt")
    assert "asyncio.run returned" not in lines  # Ctrl-C still interrupts the program
    assert result.returncode != 0 and "KeyboardInterrupt" in result.stderr
    assert "Task was destroyed" not in result.stderr
    assert "never retrieved" not in result.stderr


@pytest.mark.parametrize("from_task", [False, True], ids=["from-parent", "from-task"])
def test_sigterm_shuts_down_cleanly_then_terminates(from_task: bool) -> None:
    result = run_until_signal(signal.SIGTERM, from_task)
    lines = result.stdout.splitlines()
    assert "backend shut down" in lines and "engine stopped: SystemExit" in lines
    assert "asyncio.run returned" not in lines
    assert result.returncode == -signal.SIGTERM, result.stderr


async def test_handlers_are_installed_and_then_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in _signals.SIGNALS}
    first = await WorkflowEngine.create(backend=LoopBackend())
    second = await WorkflowEngine.create(backend="noop")
    assert all(signal.getsignal(sig) != before[sig] for sig in _signals.SIGNALS)
    await first.shutdown()
    assert all(signal.getsignal(sig) != before[sig] for sig in _signals.SIGNALS)  # still used
    await second.shutdown()
    assert {sig: signal.getsignal(sig) for sig in _signals.SIGNALS} == before


def test_no_handlers_off_the_main_thread() -> None:
    before = {sig: signal.getsignal(sig) for sig in _signals.SIGNALS}
    seen: dict[str, Any] = {}

    async def in_thread() -> None:
        async with await WorkflowEngine.create(backend=LoopBackend()) as flow:
            @flow.function_task
            async def double(x: int) -> int:
                return 2 * x

            seen["result"] = await double(double(1))
            seen["handlers"] = {sig: signal.getsignal(sig) for sig in _signals.SIGNALS}
            seen["registered"] = flow in _signals._engines

    thread = threading.Thread(target=asyncio.run, args=(in_thread(),))
    thread.start()
    thread.join(60)
    assert seen == {"result": 4, "handlers": before, "registered": False}


def test_an_engine_left_open_on_a_closed_loop_does_not_block_the_next_one() -> None:
    # Two asyncio.run() calls on the main thread need a fresh interpreter (pytest's loop is
    # already running on this one).
    code = textwrap.dedent("""
        import asyncio, signal
        from asyncflow import WorkflowEngine
        from asyncflow._kernel import signals as _signals

        async def leave_open():
            await WorkflowEngine.create(backend="noop")  # never shut down

        async def next_run():
            flow = await WorkflowEngine.create(backend="noop")
            print(flow in _signals._engines)
            await flow.shutdown()

        before = signal.getsignal(signal.SIGTERM)
        asyncio.run(leave_open())
        asyncio.run(next_run())
        print(signal.getsignal(signal.SIGTERM) == before)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


PROGRAM_HANDLER = """
import asyncio, os, signal
from asyncflow import WorkflowEngine

async def main():
    loop = asyncio.get_running_loop()
    heard = asyncio.Queue()
    for sig in (signal.SIGINT, signal.SIGTERM):  # as aiohttp and uvicorn do
        loop.add_signal_handler(sig, heard.put_nowait, sig.name)

    flow = await WorkflowEngine.create(backend="noop")
    await flow.shutdown()
    for sig in (signal.SIGINT, signal.SIGTERM):  # restored after the engine's shutdown
        os.kill(os.getpid(), sig)
        print("after shutdown:", await asyncio.wait_for(heard.get(), 30), flush=True)

    flow = await WorkflowEngine.create(backend="noop")
    os.kill(os.getpid(), signal.SIGTERM)  # while an engine runs: it shuts down, then chains
    print("while running:", await asyncio.wait_for(heard.get(), 30), "engine closed:",
          flow.closed, flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # and the program's handler is back
    print("after that:", await asyncio.wait_for(heard.get(), 30), flush=True)

asyncio.run(main())
"""


def test_handlers_the_program_added_to_its_loop_are_chained_and_restored() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM_HANDLER], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "after shutdown: SIGINT", "after shutdown: SIGTERM",
        "while running: SIGTERM engine closed: True", "after that: SIGINT"]
