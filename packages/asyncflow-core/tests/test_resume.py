"""Resume: with a journal, tasks an earlier run of the workflow completed are not run again and
resolve to their recorded results; a run killed with SIGKILL half way loses no finished task.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from loop_backend import LoopBackend

from asyncflow import RunInUseError, WorkflowEngine
from asyncflow.journal import FILENAME, read_run

TESTS = Path(__file__).parent


class Workflow:
    """A small workflow whose bodies count how often they ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def run(self, flow: WorkflowEngine, n: int = 3) -> list[int]:
        @flow.function_task
        async def load(i: int) -> int:
            self.ran.append(f"load {i}")
            return i

        @flow.function_task
        def square(x: int) -> int:  # a plain def: runs in a thread
            self.ran.append(f"square {x}")
            return x * x

        @flow.block
        async def pipeline(i: int) -> int:
            return await square(load(i))

        return list(await asyncio.gather(*(pipeline(i) for i in range(n))))


async def test_a_resumed_run_reuses_every_completed_result(tmp_path: Path) -> None:
    first = Workflow()
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                       uid="campaign", resume=True)
    assert await first.run(flow) == [0, 1, 4]
    await flow.shutdown()
    assert len(first.ran) == 6

    again = Workflow()
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                       uid="campaign", resume=True)
    assert await again.run(flow, n=4) == [0, 1, 4, 9]
    await flow.shutdown()
    assert again.ran == ["load 3", "square 3"]  # only the new call ran
    run = read_run(tmp_path / "campaign")
    assert run.session == 2 and len(run.sessions) == 2
    resumed = sorted(t.name for t in run.tasks.values() if t.resumed)
    assert resumed == ["load", "load", "load", "square", "square", "square"]


async def test_a_changed_input_runs_again(tmp_path: Path) -> None:
    ran: list[int] = []

    async def go() -> int:
        flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                           uid="r", resume=True)

        @flow.function_task
        async def inc(x: int) -> int:
            ran.append(x)
            return x + 1

        try:
            return await inc(inc(1))
        finally:
            await flow.shutdown()

    assert await go() == 3
    assert await go() == 3
    assert ran == [1, 2]  # the chain resumed whole: its keys come from upstream keys


async def test_an_explicit_cache_key_decides_what_is_the_same_call(tmp_path: Path) -> None:
    ran: list[str] = []

    async def go(path: str) -> str:
        flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                           uid="keys", resume=True)

        # The path differs between runs (a scratch folder, say); the sample name does not.
        @flow.function_task(cache_key=lambda path, sample: sample)
        async def measure(path: str, sample: str) -> str:
            ran.append(path)
            return f"{sample} measured"

        try:
            return await measure(path, "s1")
        finally:
            await flow.shutdown()

    assert await go("/scratch/a") == "s1 measured"
    assert await go("/scratch/b") == "s1 measured"
    assert ran == ["/scratch/a"]


async def test_without_resume_everything_runs_again(tmp_path: Path) -> None:
    for _ in range(2):
        flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                           uid="plain", journal=True)
        work = Workflow()
        assert await work.run(flow, n=2) == [0, 1]
        await flow.shutdown()
        assert len(work.ran) == 4


async def test_an_unpicklable_result_is_run_again(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []

    async def go() -> bool:
        flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                           uid="lock", resume=True)

        @flow.function_task
        async def make_lock(i: int) -> object:
            import threading

            ran.append(i)
            return threading.Lock()  # cannot be pickled

        try:
            return await make_lock(1) is not None
        finally:
            await flow.shutdown()

    assert await go() and await go()
    assert ran == [1, 1]
    assert "cannot be pickled" in caplog.text


async def test_resume_true_continues_the_latest_run_of_this_script(tmp_path: Path) -> None:
    first = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, resume=True)
    await first.shutdown()
    later = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, resume=True)
    await later.shutdown()
    assert later.uid == first.uid
    assert read_run(tmp_path / first.uid).session == 2


async def test_resuming_a_run_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run journal"):
        await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, resume="nope")


async def test_a_dry_run_stores_no_results_to_resume_from(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(dry_run=True, work_dir=tmp_path, uid="dry", resume=True)
    assert await Workflow().run(flow) == ["Dummy Output"] * 3
    await flow.shutdown()
    real = Workflow()
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, uid="dry",
                                       resume=True)
    assert await real.run(flow) == [0, 1, 4]
    await flow.shutdown()
    assert len(real.ran) == 6


# -- killed half way -------------------------------------------------------------------------

CHILD = """
import asyncio, os, sys, time
sys.path.insert(0, {tests!r})
from loop_backend import LoopBackend
from asyncflow import RunInUseError, WorkflowEngine

SIDE, WORK = sys.argv[1], sys.argv[2]

async def main():
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=WORK,
                                       uid="killed", resume=True)

    @flow.function_task
    def work(i):  # plain def: at most a handful run at once, in the loop's thread pool
        fd = os.open(SIDE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{{i}}\\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.004)  # simulated work
        return i * i

    results = await asyncio.gather(*(work(i) for i in range(1000)))
    await flow.shutdown()
    print(sum(results))

asyncio.run(main())
"""


def done_in_journal(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM events WHERE state = 'DONE'")
                       .fetchone()[0])
    except sqlite3.OperationalError:  # created but no table yet
        return 0


@pytest.mark.timeout(180)
def test_a_run_killed_half_way_runs_no_completed_task_twice(tmp_path: Path) -> None:
    script = tmp_path / "thousand.py"
    script.write_text(textwrap.dedent(CHILD.format(tests=str(TESTS))))
    side, work = tmp_path / "ran.txt", tmp_path / "runs"
    journal = work / "killed" / FILENAME
    command = [sys.executable, str(script), str(side), str(work)]

    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The child is another process: the test can only watch its journal. Read it every
        # 20 ms until half the tasks are recorded DONE, then kill without warning.
        deadline = time.monotonic() + 120
        while done_in_journal(journal) < 500:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never got half way"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL

    before = read_run(work / "killed", session=1)
    # Calls are numbered in call order (task.000001 is work(0)), in both runs alike.
    completed = {int(t.uid.split(".")[1]) - 1 for t in before.tasks.values()
                 if t.state == "DONE"}
    assert 500 <= len(completed) < 1000

    finished = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False)
    assert finished.returncode == 0, finished.stderr
    assert int(finished.stdout) == sum(i * i for i in range(1000))

    runs = collections.Counter(int(line) for line in side.read_text().split())
    assert set(runs) == set(range(1000))  # every task ran at least once
    twice = sorted(i for i in completed if runs[i] > 1)
    assert twice == [], f"{len(twice)} tasks completed before the kill ran again: {twice[:10]}"
    after = read_run(work / "killed")
    assert after.session == 2
    assert sum(t.resumed for t in after.tasks.values()) == len(completed)


SCRIPT = """
import asyncio, pathlib
from asyncflow import RunInUseError, WorkflowEngine

async def main():
    flow = await WorkflowEngine.create()

    @flow.function_task
    async def step(i):
        with pathlib.Path("ran.txt").open("a") as side:
            side.write(f"{i}\\n")
        return i

    print(sum(await asyncio.gather(*(step(i) for i in range(4)))))
    await flow.shutdown()

asyncio.run(main())
"""


def test_asyncflow_run_resume_skips_what_the_last_run_completed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from asyncflow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text(SCRIPT)
    for _ in range(2):
        assert main(["run", "flow.py", "--backend", "loop", "--resume"]) == 0
    assert capsys.readouterr().out.split() == ["6", "6"]
    assert (tmp_path / "ran.txt").read_text().split() == ["0", "1", "2", "3"]
    [run_dir] = [p for p in tmp_path.iterdir() if (p / FILENAME).exists()]
    run = read_run(run_dir)
    assert run.session == 2 and all(t.resumed for t in run.tasks.values())


HOLDER = """
import asyncio, sys
from asyncflow import RunInUseError, WorkflowEngine

async def main():
    async with WorkflowEngine.create(backend="noop", work_dir=sys.argv[1], uid="shared",
                                     journal=True):
        print("holding", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # until the test lets go

asyncio.run(main())
"""


async def test_two_processes_cannot_run_one_run_at_once(tmp_path: Path) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(tmp_path), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"holding\n"
        with pytest.raises(RunInUseError, match=rf"run 'shared' \(.*\) is in use by process "
                                                rf"{holder.pid} on "):
            await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                        resume="shared")
        holder.stdin.write(b"\n")
        assert await asyncio.wait_for(holder.wait(), 60) == 0
    finally:
        if holder.returncode is None:  # never leave it behind
            holder.kill()
            await holder.wait()
    async with WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path,
                                     resume="shared") as flow:  # free once it ended
        assert flow.uid == "shared"
    assert len(read_run(tmp_path / "shared").sessions) == 2


async def test_resuming_a_run_that_kept_no_results_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for resume in (False, True):
        workflow = Workflow()
        async with WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, uid="plain",
                                         journal=True, resume=resume) as flow:
            await workflow.run(flow)
        assert len(workflow.ran) == 6  # the second time too: nothing was kept
    warnings = [r.getMessage() for r in caplog.records if r.name == "asyncflow.journal"]
    assert warnings == ["run 'plain' has no stored results to resume from (it was journaled "
                        "without resume=True, which is what keeps them): every task runs again"]
