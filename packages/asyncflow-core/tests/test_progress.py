"""The live progress display: rich, per backend and state, only on a terminal, and only for
engines that ask for it.
"""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from loop_backend import FunctionsOnlyBackend, LoopBackend
from rich.console import Console

from asyncflow import WorkflowEngine

TESTS = Path(__file__).parent


def plugin_names(flow: WorkflowEngine) -> set[str]:
    return {getattr(observer, "plugin_name", "") for observer in flow.observers}


async def test_silent_and_free_when_stderr_is_not_a_terminal() -> None:
    assert not sys.stderr.isatty()  # pytest captures it
    flow = await WorkflowEngine.create(backend=LoopBackend(), progress=True)
    assert "asyncflow.progress" not in plugin_names(flow)
    await flow.shutdown()


async def test_engines_that_do_not_ask_never_call_it() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    shown = await WorkflowEngine.create(backend=LoopBackend(), progress=console)
    plain = await WorkflowEngine.create(backend=LoopBackend())
    assert "asyncflow.progress" in plugin_names(shown)
    assert "asyncflow.progress" not in plugin_names(plain)
    await asyncio.gather(shown.shutdown(), plain.shutdown())


async def test_the_final_table_counts_tasks_by_backend_and_state() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=120)
    flow = await WorkflowEngine.create(backend=[LoopBackend(), FunctionsOnlyBackend()],
                                       progress=console)

    @flow.function_task
    async def here(i: int) -> int:
        return i

    @flow.function_task(backend="functions_only")
    async def there(i: int) -> int:
        if i == 0:
            raise ValueError("one failure")
        return i

    @flow.block
    async def both(i: int) -> int:
        return await here(i) + await there(i + 1)

    await asyncio.gather(*(both(i) for i in range(5)), *(here(i) for i in range(7)))
    with pytest.raises(ValueError):
        await there(0)
    await flow.shutdown()

    final = out.getvalue().rsplit("AsyncFlow", 1)[-1]  # the last redraw, left on screen
    rows = {line.split()[0]: line.split()[1:] for line in final.splitlines()
            if line.strip() and line.split()[0] in ("loop", "functions_only", "blocks")}
    # columns: pending running done failed cancelled [bar] finished/total
    assert rows["loop"][:5] == ["0", "0", "12", "0", "0"] and rows["loop"][-1] == "12/12"
    assert rows["functions_only"][:5] == ["0", "0", "5", "1", "0"]
    assert rows["functions_only"][-1] == "6/6"
    assert rows["blocks"][:5] == ["0", "0", "5", "0", "0"] and rows["blocks"][-1] == "5/5"
    assert flow.uid in final


CHILD = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from loop_backend import LoopBackend
from asyncflow import WorkflowEngine

async def main():
    flow = await WorkflowEngine.create(backend=LoopBackend(), progress=True)

    @flow.function_task
    async def nap(i):
        await asyncio.sleep(0.8 + i / 100)  # a few redraws (4 a second) before the end
        return i

    print("sum", sum(await asyncio.gather(*(nap(i) for i in range(20)))))
    await flow.shutdown()

asyncio.run(main())
"""


def read_all(fd: int, child: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Everything the child writes to its terminal, until it exits and the pty drains."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        elif child.poll() is not None:
            break
    return b"".join(chunks)


@pytest.mark.timeout(60)
def test_a_terminal_sees_the_live_display(tmp_path: Path) -> None:
    script = tmp_path / "naps.py"
    script.write_text(textwrap.dedent(CHILD.format(tests=str(TESTS))))
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "110", "LINES": "30"}
    env.pop("NO_COLOR", None)
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                             stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        text = read_all(master, child, timeout=50).decode(errors="replace")
        assert child.wait(timeout=10) == 0, text
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
            child.wait()
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)
    assert "sum 190" in plain  # the script's own output is not lost under the display
    assert "AsyncFlow asyncflow.session." in plain
    assert re.search(r"loop\s+0\s+0\s+20\s+0\s+0\s+.*20/20", plain), plain[-2000:]
    assert re.search(r"loop\s+\d+\s+\d+\s+\d+\s+0\s+0\s+.*\b\d+/20", plain.split("20/20")[0]), \
        "no redraw before the end"
