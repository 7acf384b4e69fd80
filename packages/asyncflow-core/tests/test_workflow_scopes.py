"""Issue 13, point 2: workflow scopes and the ``workflow_id=`` call keyword."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import radical.asyncflow

import asyncflow
from asyncflow import TaskRecord, TaskState, WorkflowEngine


async def identity(value: Any) -> Any:
    return value


async def test_every_task_called_in_a_scope_carries_its_id(noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)
    before = task(0)
    async with noop_flow.workflow_scope("training") as wid:
        inside = [task(i) for i in range(3)]
    after = task(4)
    assert wid == "training"
    assert [f.workflow_id for f in inside] == ["training"] * 3
    assert before.workflow_id is None and after.workflow_id is None
    await asyncio.gather(before, *inside, after)


async def test_a_scope_without_a_name_gets_a_fresh_id(noop_flow: WorkflowEngine) -> None:
    async with noop_flow.workflow_scope() as first, noop_flow.workflow_scope(None) as second:
        pass
    assert re.fullmatch(r"wf-[0-9a-f]{8}", first) and re.fullmatch(r"wf-[0-9a-f]{8}", second)
    assert first != second


async def test_scopes_nest_and_the_innermost_wins(noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)
    async with noop_flow.workflow_scope("outer"):
        a = task(1)
        async with noop_flow.workflow_scope("inner"):
            b = task(2)
        c = task(3)
    assert [f.workflow_id for f in (a, b, c)] == ["outer", "inner", "outer"]
    await asyncio.gather(a, b, c)


async def test_a_plain_with_works_too(noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)
    with noop_flow.workflow_scope("sync") as wid:
        future = task(1)
    assert (wid, future.workflow_id, task(2).workflow_id) == ("sync", "sync", None)


async def test_a_scope_follows_into_gather_and_create_task_children(
        noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)

    async def pipeline(i: int) -> str | None:
        await asyncio.sleep(0)  # the child runs on after its parent moved on
        future = task(i)
        await future
        return future.workflow_id

    async with noop_flow.workflow_scope("fan-out"):
        gathered = asyncio.gather(*(pipeline(i) for i in range(3)))
        child = asyncio.create_task(pipeline(9))
    outside = asyncio.create_task(pipeline(10))  # started after the scope closed
    assert await gathered == ["fan-out"] * 3
    assert await child == "fan-out"
    assert await outside is None


async def test_a_scope_does_not_reach_concurrent_siblings(noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)
    entered, release = asyncio.Event(), asyncio.Event()

    async def scoped() -> str | None:
        async with noop_flow.workflow_scope("mine"):
            entered.set()
            await release.wait()
            return task(1).workflow_id

    async def sibling() -> str | None:
        await entered.wait()  # while the other one is inside its scope
        future = task(2)
        release.set()
        return future.workflow_id

    assert await asyncio.gather(scoped(), sibling()) == ["mine", None]


async def test_workflow_id_keyword_overrides_the_scope_and_is_not_passed_on(
        noop_flow: WorkflowEngine) -> None:
    seen: dict[str, Any] = {}

    @noop_flow.block
    async def takes_anything(**kwargs: Any) -> None:
        seen.update(kwargs)

    async with noop_flow.workflow_scope("scope"):
        explicit = takes_anything(workflow_id="explicit", other=1)
        fallback = takes_anything(workflow_id=None)
    await asyncio.gather(explicit, fallback)
    assert (explicit.workflow_id, fallback.workflow_id) == ("explicit", "scope")
    assert seen == {"other": 1}


@pytest.mark.parametrize("bad", ["", 7, ["x"]])
async def test_a_bad_workflow_id_names_the_task(noop_flow: WorkflowEngine, bad: Any) -> None:
    task = noop_flow.function_task(identity)
    with pytest.raises(TypeError, match="task 'identity': workflow_id= must be a non-empty "
                                        "string"):
        task(1, workflow_id=bad)
    with pytest.raises(TypeError, match="workflow_scope"):
        noop_flow.workflow_scope(bad or 0)


async def test_a_block_is_a_scope_of_its_own(noop_flow: WorkflowEngine) -> None:
    task = noop_flow.function_task(identity)
    inner: dict[str, Any] = {}

    @noop_flow.block
    async def stage() -> None:
        inner["member"] = task(1)
        async with noop_flow.workflow_scope("sub") as sub:
            inner["scoped"] = task(2)
            inner["nested"] = stage_two()
        await asyncio.gather(inner["member"], inner["scoped"], inner["nested"])
        inner["sub"] = sub

    @noop_flow.block
    async def stage_two() -> None:
        inner["deep"] = task(3)
        await inner["deep"]

    async with noop_flow.workflow_scope("run"):
        block = stage()
    await block
    assert block.workflow_id == "run"  # a block carries the scope it was called in
    assert inner["member"].workflow_id == block.uid  # its members carry the block's own
    assert inner["scoped"].workflow_id == "sub"
    assert inner["nested"].workflow_id == "sub"
    assert inner["deep"].workflow_id == inner["nested"].uid


async def test_tasks_of_a_scope_inside_a_block_stay_its_members(
        noop_flow: WorkflowEngine) -> None:
    gate, called = asyncio.Event(), asyncio.Event()

    @noop_flow.block
    async def waits() -> None:
        await gate.wait()

    inner: list[Any] = []

    @noop_flow.block
    async def outer() -> None:
        async with noop_flow.workflow_scope("inside"):
            inner.append(waits())
        called.set()
        await inner[0]

    block = outer()
    await called.wait()
    block.cancel()
    with pytest.raises(asyncio.CancelledError):
        await block
    assert inner[0].cancelled()  # cancelling the block reached the scoped member


async def test_observers_read_workflow_id_on_the_record() -> None:
    seen: list[tuple[str, str | None]] = []

    class Plugin:
        @asyncflow.hookimpl
        def asyncflow_task_state_changed(self, task: TaskRecord, new: TaskState) -> None:
            if new is TaskState.DONE:
                seen.append((task.name, task.workflow_id))

    async with WorkflowEngine.create(backend="noop", observers=[Plugin()]) as flow:
        async with flow.workflow_scope("observed"):
            await flow.function_task(identity)(1)
        await flow.function_task(identity)(2)
    assert seen == [("identity", "observed"), ("identity", None)]


async def test_the_journal_records_each_tasks_workflow(tmp_path: Path) -> None:
    from asyncflow.journal import read_run

    async with WorkflowEngine.create(backend="noop", work_dir=tmp_path, journal=True) as flow:
        task = flow.function_task(identity)

        members: list[Any] = []

        @flow.block
        async def stage() -> Any:
            members.append(task(1))
            return await members[0]

        async with flow.workflow_scope("journaled"):
            a = task(0)
            b = stage()
        c = task(2)
        await asyncio.gather(a, b, c)
    runs = read_run(tmp_path / flow.uid).tasks
    assert {uid: t.workflow for uid, t in runs.items()} == {
        a.uid: "journaled", b.uid: "journaled", members[0].uid: b.uid, c.uid: None}


async def test_the_report_groups_by_workflow(tmp_path: Path) -> None:
    from asyncflow.journal import read_run
    from asyncflow.report import layout, write_report

    async with WorkflowEngine.create(backend="noop", work_dir=tmp_path, journal=True) as flow:
        task = flow.function_task(identity)
        async with flow.workflow_scope("alpha"):
            alpha = [task(i) for i in range(2)]
        async with flow.workflow_scope("beta"):
            beta = task(3)
        await asyncio.gather(*alpha, beta, task(4))
    labels = [row.label for row in layout(read_run(tmp_path / flow.uid)).rows if row.label]
    assert labels == ["alpha · noop", "beta · noop", "workflow · noop"]
    page = write_report(tmp_path / flow.uid).read_text()
    workflows = page[page.index("<h2>Workflows</h2>"):page.index("<h2>Durations")]
    assert re.search(r'<td class="l">alpha</td><td>2</td><td>2</td>', workflows)
    assert re.search(r'<td class="l">beta</td><td>1</td><td>1</td>', workflows)


async def test_the_report_shows_a_scope_inside_a_block(tmp_path: Path) -> None:
    from asyncflow.journal import read_run
    from asyncflow.report import layout

    async with WorkflowEngine.create(backend="noop", work_dir=tmp_path, journal=True) as flow:
        task = flow.function_task(identity)

        @flow.block
        async def stage() -> None:
            await task(1)
            async with flow.workflow_scope("checks"):
                await task(2)

        await stage()
    rows = layout(read_run(tmp_path / flow.uid)).rows
    assert [(row.label, row.depth) for row in rows if row.label] == [
        ("stage · block.000001", 0), ("noop", 1), ("checks · noop", 1)]
    (checked,) = [bar for row in rows for bar in row.bars if bar.task.workflow == "checks"]
    assert checked.tooltip.splitlines()[-2:] == ["in block block.000001", "in workflow checks"]


async def test_a_scope_is_left_on_an_exception_too(noop_flow: WorkflowEngine) -> None:
    with pytest.raises(KeyError):
        async with noop_flow.workflow_scope("failing"):
            raise KeyError("inside")
    assert noop_flow.function_task(identity)(1).workflow_id is None


async def test_the_graph_draws_scopes_as_subgraphs() -> None:
    async with WorkflowEngine.create(dry_run=True, graph=True) as flow:
        task = flow.function_task(identity)
        async with flow.workflow_scope("left side"):
            first = task(1)
        task(first)
    mermaid = flow.graph().to_mermaid()
    assert 'subgraph wf_top_left_side["workflow left side"]\n' \
           '        task_000001["identity<br/>task.000001"]\n    end\n' in mermaid
    assert "task_000001 --> task_000002" in mermaid
    dot = flow.graph().to_dot()
    assert 'subgraph cluster_wf_top_left_side {\n        label="workflow left side";' in dot


# -- upstream's names, on the radical.asyncflow alias -----------------------------------------


async def test_workflow_scope_does_not_leak_to_sibling_engine() -> None:
    engine = radical.asyncflow.WorkflowEngine
    async with engine.create(dry_run=True) as one, engine.create(dry_run=True) as two:
        async with one.workflow_scope("wf-A"):
            mine = one.function_task(identity)(1)
            theirs = two.function_task(identity)(2)
        await asyncio.gather(mine, theirs)
    assert (mine.workflow_id, theirs.workflow_id) == ("wf-A", None)


async def test_workflow_scope_stamps_all_tasks_on_same_engine() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        async with flow.workflow_scope("wf-B"):
            futures = [flow.function_task(identity)(i) for i in range(2)]
            futures.append(flow.executable_task(lambda: "true")())
        await asyncio.gather(*futures)
    assert {f.workflow_id for f in futures} == {"wf-B"}


async def test_workflow_scope_resets_after_exit() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        async with flow.workflow_scope("wf-C"):
            inside = flow.function_task(identity)(1)
        outside = flow.function_task(identity)(2)
        await asyncio.gather(inside, outside)
    assert (inside.workflow_id, outside.workflow_id) == ("wf-C", None)


async def test_explicit_workflow_id_is_recorded() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        future = flow.function_task(identity)(1, workflow_id="my-wf")
        await future
    assert future.workflow_id == "my-wf"


async def test_explicit_workflow_id_not_passed_to_function() -> None:
    received: dict[str, Any] = {}

    async with radical.asyncflow.WorkflowEngine.create(backend="loop") as flow:
        @flow.function_task
        async def capturing(**kwargs: Any) -> str:
            received.update(kwargs)
            return "ok"

        assert await capturing(workflow_id="wf-invisible", kept=True) == "ok"
    assert received == {"kept": True}


async def test_explicit_workflow_id_overrides_context_var() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        async with flow.workflow_scope("ctx-wf"):
            future = flow.function_task(identity)(1, workflow_id="explicit-wf")
        await future
    assert future.workflow_id == "explicit-wf"


async def test_workflow_id_falls_back_to_context_var() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        async with flow.workflow_scope("scope-wf"):
            future = flow.function_task(identity)(1)
        await future
    assert future.workflow_id == "scope-wf"


async def test_a_journal_from_before_workflows_is_read_and_resumed(tmp_path: Path) -> None:
    import sqlite3

    from asyncflow.journal import FILENAME, read_run

    async with WorkflowEngine.create(backend="noop", work_dir=tmp_path, journal=True) as flow:
        await flow.function_task(identity)(1)
    path = tmp_path / flow.uid / FILENAME
    with sqlite3.connect(path) as conn:  # the schema an older asyncflow wrote
        conn.execute("ALTER TABLE events DROP COLUMN workflow")
    conn.close()
    assert [t.workflow for t in read_run(path).tasks.values()] == [None]
    again = await WorkflowEngine.create(backend="noop", work_dir=tmp_path, resume=flow.uid)
    async with again, again.workflow_scope("second"):
        await again.function_task(identity)(2)
    resumed = read_run(path)
    assert resumed.session == 2
    assert [t.workflow for t in resumed.tasks.values()] == ["second"]
