"""The task graph of a run, as Mermaid or Graphviz text.

The engine forgets finished tasks, so the graph keeps its own small log: one node per task or
block and one edge per dependency, appended by an observer when a task is created. It is kept
only for engines created with ``graph=True`` (or a ``dag`` file in the configuration, or
``asyncflow run --dag FILE``); ``dry_run=True`` with it shows the plan without running it::

    flow = await WorkflowEngine.create(dry_run=True, graph=True)
    ...  # call the workflow's tasks and blocks
    await flow.shutdown()
    print(flow.graph().to_mermaid())
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.task import BLOCK, EXECUTABLE, PROMPT
from asyncflow.hookspecs import hookimpl

if TYPE_CHECKING:
    from asyncflow._kernel.engine import WorkflowEngine
    from asyncflow._kernel.task import TaskFuture, TaskRecord
    from asyncflow.backend import TaskState

__all__ = ["Node", "TaskGraph"]

log = logging.getLogger("asyncflow.graph")


@dataclass(frozen=True, slots=True)
class Node:
    """A task or block: ``uid``, function ``name``, ``kind``, its enclosing ``block``, its
    ``backend`` and its ``workflow`` scope."""

    uid: str
    name: str
    kind: str
    block: str | None
    backend: str | None
    workflow: str | None = None


@dataclass
class TaskGraph:
    """Tasks and blocks (:attr:`nodes`, in creation order) and dependencies (:attr:`edges`,
    ``(upstream uid, downstream uid)``). A block's members are drawn inside it, and the
    tasks and blocks of a workflow scope inside a box of their own.
    """

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    """The last state of each node (``DONE``, ``FAILED``...); a dry run ends all ``DONE``."""

    def add(self, task: TaskRecord, dependencies: Sequence[TaskFuture[Any]],
            default_backend: str | None = None) -> None:
        """Record a created task and the futures it waits for."""
        backend = None if task.kind == BLOCK else task.options.backend or default_backend
        self.nodes[task.uid] = Node(task.uid, task.name, task.kind, task.block, backend,
                                    task.workflow_id)
        seen: set[str] = set()
        for dep in dependencies:
            if dep.uid not in seen:
                seen.add(dep.uid)
                self.edges.append((dep.uid, task.uid))

    def children(self, block: str | None) -> list[Node]:
        """The nodes directly inside ``block`` (``None``: the top level)."""
        return [n for n in self.nodes.values() if n.block == block]

    def scopes(self, block: str | None) -> tuple[list[Node], dict[str, list[Node]]]:
        """The nodes directly inside ``block``: those in no scope of their own (the block's
        is its own), and those of each workflow scope opened there, by scope id."""
        loose: list[Node] = []
        scoped: dict[str, list[Node]] = defaultdict(list)
        for node in self.children(block):
            if node.workflow is None or node.workflow == block:
                loose.append(node)
            else:
                scoped[node.workflow].append(node)
        return loose, scoped

    # -- Mermaid ---------------------------------------------------------------------------

    def to_mermaid(self, direction: str = "TD") -> str:
        """A Mermaid ``flowchart``: blocks and workflow scopes are subgraphs, executables are
        rounded, prompts hexagons, every node is labelled with its function's name and uid.
        """
        lines = [f"flowchart {direction}"]
        lines += self._mermaid_level(None, "    ")
        lines += [f"    {_ident(a)} --> {_ident(b)}" for a, b in self.edges
                  if a in self.nodes and b in self.nodes]
        return "\n".join(lines) + "\n"

    def _mermaid_level(self, block: str | None, indent: str) -> Iterator[str]:
        loose, scoped = self.scopes(block)
        for workflow, nodes in scoped.items():
            title = f"workflow {workflow}".replace('"', "#quot;")
            yield f'{indent}subgraph {_scope_ident(block, workflow)}["{title}"]'
            yield from self._mermaid_nodes(nodes, indent + "    ")
            yield f"{indent}end"
        yield from self._mermaid_nodes(loose, indent)

    def _mermaid_nodes(self, nodes: list[Node], indent: str) -> Iterator[str]:
        for node in nodes:
            if node.kind == BLOCK:
                title = f"{node.name} · {node.uid}".replace('"', "#quot;")  # one line fits
                yield f'{indent}subgraph {_ident(node.uid)}["{title}"]'
                yield from self._mermaid_level(node.uid, indent + "    ")
                yield f"{indent}end"
            elif node.kind == EXECUTABLE:
                yield f'{indent}{_ident(node.uid)}("{_label(node)}")'
            elif node.kind == PROMPT:
                yield f'{indent}{_ident(node.uid)}{{{{"{_label(node)}"}}}}'
            else:
                yield f'{indent}{_ident(node.uid)}["{_label(node)}"]'

    # -- Graphviz ----------------------------------------------------------------------------

    def to_dot(self, name: str = "asyncflow") -> str:
        """A Graphviz ``digraph``: blocks are ``cluster`` subgraphs, so ``dot`` boxes them."""
        lines = [f'digraph "{_dot_text(name)}" {{', "    rankdir=TB;",
                 '    graph [fontname="Helvetica"];',
                 '    node [shape=box, style="rounded,filled", fillcolor="#eef2f7", '
                 'fontname="Helvetica"];']
        lines += self._dot_level(None, "    ")
        for a, b in self.edges:
            if a in self.nodes and b in self.nodes:
                # An edge from or to a block attaches to its cluster's anchor node.
                lines.append(f"    {_ident(a)} -> {_ident(b)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _dot_level(self, block: str | None, indent: str) -> Iterator[str]:
        loose, scoped = self.scopes(block)
        for workflow, nodes in scoped.items():
            yield f"{indent}subgraph cluster_{_scope_ident(block, workflow)} {{"
            yield (f'{indent}    label="workflow {_dot_text(workflow)}"; style="dashed"; '
                   'color="#7b8794";')
            yield from self._dot_nodes(nodes, indent + "    ")
            yield f"{indent}}}"
        yield from self._dot_nodes(loose, indent)

    def _dot_nodes(self, nodes: list[Node], indent: str) -> Iterator[str]:
        for node in nodes:
            if node.kind == BLOCK:
                yield f"{indent}subgraph cluster_{_ident(node.uid)} {{"
                yield f'{indent}    label="{_dot_label(node)}"; style="rounded";'
                # The block itself, as a node, so edges can reach it like any task.
                yield (f'{indent}    {_ident(node.uid)} [label="{_dot_text(node.name)}", '
                       'shape=folder, fillcolor="#fff4d6"];')
                yield from self._dot_level(node.uid, indent + "    ")
                yield f"{indent}}}"
            else:
                shape = _DOT_SHAPES.get(node.kind, "")
                yield f'{indent}{_ident(node.uid)} [label="{_dot_label(node)}"{shape}];'

    def write(self, path: str | Path) -> Path:
        """Write the graph to ``path``: Graphviz for ``.dot``/``.gv``, Mermaid otherwise
        (``.mmd``; ``.md`` wraps it in a fenced block that Markdown viewers draw).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".dot", ".gv"):
            text = self.to_dot()
        elif suffix == ".md":
            text = f"```mermaid\n{self.to_mermaid()}```\n"
        else:
            text = self.to_mermaid()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


_DOT_SHAPES = {EXECUTABLE: ", shape=cds", PROMPT: ", shape=note"}


def _ident(uid: str) -> str:
    return uid.replace(".", "_")


def _scope_ident(block: str | None, workflow: str) -> str:
    """A subgraph id for a scope: unique per enclosing block, whatever the scope's name."""
    return f"wf_{_ident(block or 'top')}_{re.sub(r'[^A-Za-z0-9_]', '_', workflow)}"


def _label(node: Node) -> str:
    return f"{node.name}<br/>{node.uid}".replace('"', "#quot;")


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_label(node: Node) -> str:
    return f"{_dot_text(node.name)}\\n{node.uid}"


class GraphPlugin:
    """One engine's observer that records its task graph (``engine.graph()`` returns it) and,
    given ``dag_file``, writes it there when the engine stops. ``create(graph=True)`` or a
    configured ``dag`` file adds it.
    """

    plugin_name = "asyncflow.graph"

    def __init__(self, dag_file: str | Path | None = None) -> None:
        self.task_graph = TaskGraph()
        self.dag_file = Path(dag_file) if dag_file is not None else None

    @hookimpl
    def asyncflow_task_created(self, engine: WorkflowEngine, task: TaskRecord,
                               dependencies: Sequence[TaskFuture[Any]]) -> None:
        self.task_graph.add(task, dependencies, engine.default_backend)

    @hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, new: TaskState) -> None:
        if new.is_terminal:
            self.task_graph.states[task.uid] = new.value

    @hookimpl
    def asyncflow_engine_stopped(self, engine: WorkflowEngine) -> None:
        if self.dag_file is not None:
            try:
                path = self.task_graph.write(self.dag_file)
            except OSError as exc:
                log.error("cannot write the task graph to %s: %s", self.dag_file, exc)
            else:
                log.info("wrote the task graph of %s to %s", engine.uid, path)
