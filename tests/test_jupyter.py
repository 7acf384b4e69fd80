"""Issue 12, point 6: in a Jupyter kernel an interrupt cancels what the cell awaits and leaves
the engine and its backend running for the next cell; ``shutdown()`` still ends everything.

A notebook of the seed's composite workflow runs in a real kernel (nbclient + ipykernel),
one cell is interrupted while its task runs, and the cells after it use the same engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

LIMIT = 60.0

SETUP = """\
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine

backend = await ConcurrentExecutionBackend(ThreadPoolExecutor())
asyncflow = await WorkflowEngine.create(backend=backend)

@asyncflow.function_task
async def task1(name: str):
    await asyncio.sleep(0.1)  # simulate work
    return time.time()

@asyncflow.function_task
async def task2(name: str):
    await asyncio.sleep(0.1)
    return time.time()

@asyncflow.function_task
async def task3(name: str, *args):
    await asyncio.sleep(0.1)
    return time.time()

async def create_workflow(name):
    t1 = task1('task1')
    t2 = task2('task2')
    t3 = task3('task3', t1, t2)
    return await t3

@asyncflow.block
async def create_block(name: str, *args):
    wf1 = await create_workflow('WF1')
    wf2 = await create_workflow('WF2')
    wf3 = await create_workflow('WF3')
    return name

@asyncflow.function_task
async def hold(signal_path: str):
    with open(signal_path, "w") as running:  # tells the test it is time to interrupt
        running.write("running\\n")
    await asyncio.sleep(600)
"""

INTERRUPTED = """\
held = hold({fifo!r})
await asyncio.gather(create_block("Block A"), held)
"""

NEXT = """\
print("held:", held.cancelled(), "engine closed:", asyncflow.closed, "backend closed:",
      backend.closed)
print(await asyncio.gather(create_block("Block A"), create_block("Block B"),
                           create_block("Block C")))
"""

SHUTDOWN = """\
await asyncflow.shutdown()
print("engine closed:", asyncflow.closed, "backend closed:", backend.closed)
"""


@contextlib.contextmanager
def fifo_reader(path: Path) -> Iterator[int]:
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # never blocks, whoever writes or not
    try:
        yield fd
    finally:
        os.close(fd)


async def readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, LIMIT)
    finally:
        loop.remove_reader(fd)


def text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs)


async def test_an_interrupt_cancels_the_cell_and_the_engine_serves_the_next(
        tmp_path: Path) -> None:
    fifo = tmp_path / "running"
    notebook = new_notebook(cells=[new_code_cell(SETUP),
                                   new_code_cell(INTERRUPTED.format(fifo=str(fifo))),
                                   new_code_cell(NEXT), new_code_cell(SHUTDOWN)])
    notebook.cells[1].metadata["tags"] = ["raises-exception"]  # its interrupt is the point
    client = NotebookClient(notebook, kernel_name="python3", timeout=LIMIT,
                            resources={"metadata": {"path": str(tmp_path)}})
    with fifo_reader(fifo) as fd:
        async with client.async_setup_kernel():
            setup, interrupted, after, shutdown = notebook.cells
            await client.async_execute_cell(setup, 0)
            cell = asyncio.ensure_future(client.async_execute_cell(interrupted, 1))
            await readable(fd)  # hold() runs
            assert client.km is not None
            await client.km.interrupt_kernel()
            await asyncio.wait_for(cell, LIMIT)
            await client.async_execute_cell(after, 2)
            await client.async_execute_cell(shutdown, 3)

    assert [o.get("ename") for o in interrupted.outputs] == ["CancelledError"]
    assert text(after).splitlines() == [
        "held: True engine closed: False backend closed: False",
        "['Block A', 'Block B', 'Block C']"]
    assert text(shutdown) == "engine closed: True backend closed: True\n"
