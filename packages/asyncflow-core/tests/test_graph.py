"""DAG export: ``engine.graph()`` as Mermaid and Graphviz text, blocks as subgraphs, edges from
dependencies; with ``dry_run=True`` it is the plan of a workflow that runs nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from loop_backend import LoopBackend

from asyncflow import WorkflowEngine
from asyncflow.graph import TaskGraph


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def composite(flow: WorkflowEngine, ran: list[str]) -> None:
    """The seed's shape: two blocks, the second waiting for the first, tasks inside both."""

    @flow.function_task
    async def prepare() -> int:
        ran.append("prepare")
        return 1

    @flow.function_task
    async def simulate(x: object) -> int:
        ran.append("simulate")
        return 2

    @flow.executable_task
    async def analyse(x: object) -> str:
        return "echo analysed"

    @flow.block
    async def stage(label: str, after: object = None) -> object:
        first = simulate(prepare())
        return await analyse(first)

    one = stage("one")
    two = stage("two", after=one)
    await two


async def test_a_dry_run_shows_the_plan_and_runs_no_body(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(dry_run=True, graph=True, work_dir=tmp_path)
    ran: list[str] = []
    await composite(flow, ran)
    await flow.shutdown()
    assert ran == []  # noop ran nothing
    graph = flow.graph()
    blocks = [n for n in graph.nodes.values() if n.kind == "block"]
    assert [b.name for b in blocks] == ["stage", "stage"]
    assert len(graph.nodes) == 2 + 2 * 3
    for block in blocks:  # each block holds its own three tasks
        assert sorted(n.name for n in graph.children(block.uid)) == [
            "analyse", "prepare", "simulate"]
    assert (blocks[0].uid, blocks[1].uid) in graph.edges  # two waits for one
    assert len(graph.edges) == 1 + 2 * 2
    assert files_in(tmp_path) == []  # a plan writes nothing


async def test_mermaid_draws_blocks_as_subgraphs_and_every_edge(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(dry_run=True, graph=True)
    await composite(flow, [])
    await flow.shutdown()
    graph = flow.graph()
    text = graph.to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert text.count("subgraph ") == 2 and sum(line.strip() == "end" for line in lines) == 2
    for uid, node in graph.nodes.items():
        ident = uid.replace(".", "_")
        if node.kind == "block":
            assert f'subgraph {ident}["{node.name} · {uid}"]' in text
        else:
            assert re.search(rf'\b{ident}[\[(]"{node.name}<br/>{uid}"', text)
    arrows = {tuple(line.strip().split(" --> ")) for line in lines if " --> " in line}
    assert arrows == {(a.replace(".", "_"), b.replace(".", "_")) for a, b in graph.edges}
    # Blocks' members sit between their subgraph line and its end.
    first_block = next(n for n in graph.nodes.values() if n.kind == "block")
    start = next(i for i, line in enumerate(lines)
                 if line.strip().startswith(f"subgraph {first_block.uid.replace('.', '_')}"))
    inside = lines[start + 1:start + 4]
    assert {line.strip().split("[")[0].split("(")[0] for line in inside} == {
        n.uid.replace(".", "_") for n in graph.children(first_block.uid)}


async def test_dot_draws_blocks_as_clusters(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(dry_run=True, graph=True)
    await composite(flow, [])
    await flow.shutdown()
    graph = flow.graph()
    text = graph.to_dot()
    assert text.startswith('digraph "asyncflow" {') and text.rstrip().endswith("}")
    assert text.count("subgraph cluster_block_") == 2
    assert text.count("{") == text.count("}")
    for a, b in graph.edges:
        assert f"{a.replace('.', '_')} -> {b.replace('.', '_')};" in text
    assert "shape=cds" in text  # executables look different from functions


async def test_a_real_run_records_its_graph_and_final_states(tmp_path: Path) -> None:
    flow = await WorkflowEngine.create(backend=LoopBackend(), graph=True)

    @flow.function_task
    async def add(a: int, b: int) -> int:
        return a + b

    @flow.function_task
    async def fail(x: int) -> None:
        raise ValueError(x)

    total = add(add(1, 2), add(3, 4))
    assert await total == 10
    with pytest.raises(ValueError):
        await fail(total)
    await flow.shutdown()
    graph = flow.graph()
    assert len(graph.nodes) == 4
    assert sorted(graph.edges) == [("task.000001", "task.000003"),
                                   ("task.000002", "task.000003"),
                                   ("task.000003", "task.000004")]
    assert graph.states == {"task.000001": "DONE", "task.000002": "DONE",
                            "task.000003": "DONE", "task.000004": "FAILED"}


async def test_a_repeated_dependency_is_one_edge() -> None:
    flow = await WorkflowEngine.create(dry_run=True, graph=True)

    @flow.function_task
    async def one() -> int:
        return 1

    @flow.function_task
    async def both(a: object, b: object) -> None: ...

    x = one()
    await both(x, [x, {"again": x}])
    await flow.shutdown()
    assert flow.graph().edges == [("task.000001", "task.000002")]


async def test_without_recording_graph_explains_how_to_ask(noop_flow: WorkflowEngine) -> None:
    with pytest.raises(RuntimeError, match=r"create\(graph=True\)"):
        noop_flow.graph()


@pytest.mark.parametrize(("name", "first_line"), [
    ("plan.mmd", "flowchart TD"), ("plan.md", "```mermaid"), ("plan.dot", 'digraph "asyncflow" {'),
    ("plan.gv", 'digraph "asyncflow" {')])
def test_write_picks_the_format_from_the_suffix(tmp_path: Path, name: str,
                                                first_line: str) -> None:
    path = TaskGraph().write(tmp_path / "sub" / name)
    assert path.read_text().splitlines()[0] == first_line


async def test_a_dag_file_in_the_configuration_is_written_at_shutdown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asyncflow.toml").write_text('dag = "out/plan.dot"\n')
    flow = await WorkflowEngine.create(dry_run=True)
    await composite(flow, [])
    await flow.shutdown()
    text = (tmp_path / "out" / "plan.dot").read_text()
    assert text.count("subgraph cluster_") == 2


def test_asyncflow_run_dag_with_noop_writes_the_plan_and_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncflow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text(
        "import asyncio\n"
        "from asyncflow import WorkflowEngine\n\n"
        "async def main():\n"
        "    flow = await WorkflowEngine.create()\n\n"
        "    @flow.function_task\n"
        "    def touch(name, *after):\n"
        "        open(name, 'w').close()\n\n"
        "    await touch('b', touch('a'))\n"
        "    await flow.shutdown()\n\n"
        "asyncio.run(main())\n")
    assert main(["run", "flow.py", "--backend", "noop", "--dag", "out/plan.mmd"]) == 0
    plan = (tmp_path / "out" / "plan.mmd").read_text()
    assert "task_000001 --> task_000002" in plan
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
