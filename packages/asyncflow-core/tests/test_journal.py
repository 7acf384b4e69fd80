"""The run journal: nothing on disk unless asked; when asked, every state change of every task
and block, in an SQLite file that plain ``sqlite3`` reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from loop_backend import LoopBackend

from asyncflow import WorkflowEngine
from asyncflow.errors import ConfigError, DependencyFailureError, ExecutableFailedError
from asyncflow.journal import FILENAME, read_run


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def events(path: Path) -> list[tuple[str, str, str, int, int | None, str | None]]:
    """(uid, name, state, attempt, exit_code, error_type) of every event, read with plain SQL."""
    with closing(sqlite3.connect(path)) as conn:  # `with conn` alone commits, not closes
        return conn.execute("SELECT uid, name, state, attempt, exit_code, error_type FROM "
                            "events ORDER BY rowid").fetchall()


def states(rows: list[tuple[str, str, str, int, int | None, str | None]],
           uid: str) -> list[str]:
    return [row[2] for row in rows if row[0] == uid]


async def test_nothing_is_written_without_a_journal(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path)

    @flow.function_task
    async def twice(x: int) -> int:
        return 2 * x

    assert await twice(twice(1)) == 4
    await flow.shutdown()
    assert flow.observers == ()
    assert files_in(tmp_path) == []


async def test_every_state_change_is_recorded(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, journal=True)
    started, release = asyncio.Event(), asyncio.Event()

    @flow.function_task
    async def square(x: int) -> int:
        return x * x

    @flow.function_task(retries=1)
    async def broken() -> None:
        raise ValueError("always")

    @flow.function_task
    async def after(value: object) -> None: ...

    @flow.function_task
    async def waits() -> None:
        started.set()
        await release.wait()

    @flow.executable_task
    async def exits() -> str:
        return "sh -c 'exit 3'"

    @flow.block
    async def pair(x: int) -> int:
        return await square(x) + await square(x + 1)

    assert await pair(square(1)) == 5
    with pytest.raises(ValueError):
        await broken()
    with pytest.raises(DependencyFailureError):
        await after(flow.function_task(broken)())
    with pytest.raises(ExecutableFailedError):
        await exits()
    stuck = waits()
    await asyncio.wait_for(started.wait(), 10)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    await flow.shutdown()

    path = tmp_path / flow.uid / FILENAME
    rows = events(path)
    run = read_run(tmp_path / flow.uid)
    by_name: dict[str, list[str]] = {}
    for task in run.tasks.values():
        by_name.setdefault(task.name, []).append(task.uid)
    # Every task called, with every state it went through, in order.
    for uid in by_name["square"]:
        assert states(rows, uid) == ["PENDING", "RUNNING", "DONE"]
    assert states(rows, by_name["pair"][0]) == ["PENDING", "RUNNING", "DONE"]
    first_broken = by_name["broken"][0]
    assert states(rows, first_broken) == ["PENDING", "RUNNING", "PENDING", "RUNNING", "FAILED"]
    assert [(r[3], r[5]) for r in rows if r[0] == first_broken] == [
        (1, None), (1, None), (2, "ValueError"), (2, None), (2, "ValueError")]
    assert states(rows, by_name["after"][0]) == ["PENDING", "FAILED"]
    assert run.tasks[by_name["after"][0]].error_type == "DependencyFailureError"
    exits_row = [r for r in rows if r[0] == by_name["exits"][0]][-1]
    assert exits_row[2:] == ("FAILED", 1, 3, "ExecutableFailedError")
    assert states(rows, by_name["waits"][0])[-1] == "CANCELLED"
    # Block membership, backends and dependencies.
    members = [t for t in run.tasks.values() if t.block == by_name["pair"][0]]
    assert sorted(t.uid for t in members) == sorted(by_name["square"][1:])
    ran = [t for t in run.tasks.values() if t.kind != "block" and t.started is not None]
    assert {t.backend for t in ran} == {"loop"}
    assert run.tasks[by_name["after"][0]].backend is None  # never reached one
    assert run.tasks[by_name["pair"][0]].dependencies == [by_name["square"][0]]
    # The session is closed cleanly.
    assert run.info["stopped"] is not None and run.info["error"] is None
    assert run.info["engine"] == flow.uid


async def test_timestamps_order_each_tasks_life(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, journal=True)

    @flow.function_task
    async def nap() -> None:
        await asyncio.sleep(0.01)

    await asyncio.gather(*(nap() for _ in range(5)))
    await flow.shutdown()
    for task in read_run(tmp_path / flow.uid).tasks.values():
        assert task.created is not None and task.started is not None
        assert task.finished is not None
        assert task.created <= task.started < task.finished
        assert task.duration is not None and task.duration >= 0.01 - 0.002


async def test_the_configuration_can_turn_the_journal_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asyncflow.toml").write_text("journal = true\n")
    flow = await WorkflowEngine.create(backend=LoopBackend())
    assert [o.plugin_name for o in flow.observers] == ["asyncflow.journal"]
    await flow.shutdown()
    assert (tmp_path / flow.uid / FILENAME).exists()
    # create(journal=False) still wins over the file.
    quiet = await WorkflowEngine.create(backend=LoopBackend(), journal=False)
    await quiet.shutdown()
    assert not (tmp_path / quiet.uid).exists()


async def test_a_thousand_tasks_lose_no_event(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=tmp_path, journal=True)

    @flow.function_task
    async def one(i: int) -> int:
        return i

    assert sum(await asyncio.gather(*(one(i) for i in range(1000)))) == sum(range(1000))
    await flow.shutdown()
    rows = events(tmp_path / flow.uid / FILENAME)
    assert len(rows) == 3000
    assert sum(1 for r in rows if r[2] == "DONE") == 1000


async def test_reading_a_missing_journal_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="journal=True"):
        read_run(tmp_path)


@pytest.mark.parametrize(("line", "message"), [
    ('journal = "yes"', "journal must be true or false"),
    ("progress = 1", "progress must be true or false"),
    ('resume = ""', "resume must be true"),
    ("dag = 3", "dag must be a file"),
])
async def test_a_bad_observability_setting_names_the_file_and_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asyncflow.toml").write_text(line + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        await WorkflowEngine.create(backend=LoopBackend())
    assert str(tmp_path / "asyncflow.toml") in str(caught.value)
