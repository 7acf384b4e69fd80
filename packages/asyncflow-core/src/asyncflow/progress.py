"""A live display of a run's tasks by state, per backend, drawn with rich on a terminal.

``asyncflow run`` shows it by default; from Python, ``WorkflowEngine.create(progress=True)``.
It stays silent when stderr is not a terminal (a log file, CI, a pipe); rich is imported only
when there is a terminal to draw on.

It is an ordinary observer plugin, registered as ``asyncflow.progress`` through the same door
as any third-party plugin. The observers only add and subtract counts on the event loop; rich
redraws from its own refresh thread four times a second, so a run of a million tasks costs a
few integer updates per task, not a redraw per task.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from asyncflow._kernel.task import BLOCK
from asyncflow.backend import TaskState
from asyncflow.hookspecs import hookimpl

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from asyncflow._kernel.engine import WorkflowEngine
    from asyncflow._kernel.task import TaskRecord

__all__ = ["ProgressDisplay", "console_for"]

log = logging.getLogger("asyncflow.progress")

BLOCKS = "blocks"  # the row of blocks, which run on the engine itself
UNKNOWN = "?"  # tasks that name a backend the engine does not have (they fail at once)
_STYLES = {TaskState.PENDING: "dim", TaskState.RUNNING: "cyan", TaskState.DONE: "green",
           TaskState.FAILED: "red", TaskState.CANCELLED: "yellow"}


def console_for(progress: Any) -> Console | None:
    """The rich console to draw on for ``create(progress=...)``, or ``None`` for no display.

    ``True`` means stderr when it is a terminal; a :class:`rich.console.Console` is used as
    given (tests and tools pass one that writes to a file).
    """
    if not progress:
        return None
    if progress is not True:
        return progress  # type: ignore[no-any-return]
    if not sys.stderr.isatty():  # before importing rich: a batch job pays nothing
        return None
    try:
        from rich.console import Console
    except ImportError:
        log.warning("no progress display: it needs rich (pip install 'asyncflow-core[progress]')")
        return None

    console = Console(stderr=True)
    return console if console.is_terminal else None


class ProgressDisplay:
    """Counts of an engine's tasks by backend and state, and the rich ``Live`` showing them."""

    def __init__(self, engine: WorkflowEngine, console: Console) -> None:
        from rich.live import Live

        self.engine = engine
        self.default_backend = engine.default_backend
        # Rows exist before the refresh thread reads them: it never sees the dict change size.
        names = [*engine.backends, BLOCKS, UNKNOWN]
        self.counts: dict[str, dict[TaskState, int]] = {
            name: dict.fromkeys(TaskState, 0) for name in names}
        self.started = time.monotonic()
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4,
                         transient=False, redirect_stdout=True, redirect_stderr=True)

    def _row(self, task: TaskRecord) -> dict[TaskState, int]:
        if task.kind == BLOCK:
            return self.counts[BLOCKS]
        name = task.backend or task.options.backend or self.default_backend
        return self.counts.get(name) or self.counts[UNKNOWN]

    def created(self, task: TaskRecord) -> None:
        self._row(task)[TaskState.PENDING] += 1

    def changed(self, task: TaskRecord, old: TaskState, new: TaskState) -> None:
        row = self._row(task)
        row[old] -= 1
        row[new] += 1

    def render(self) -> RenderableType:
        """The table: one row per backend that has tasks, and blocks; drawn by rich's thread."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        table = Table(title=f"AsyncFlow {self.engine.uid}  ·  {_clock(elapsed)}",
                      title_justify="left", title_style="bold", box=None, padding=(0, 1))
        table.add_column("backend", style="bold")
        for state in TaskState:
            table.add_column(state.value.lower(), justify="right", style=_STYLES[state])
        table.add_column("progress", width=32)
        table.add_column("", justify="right")
        for name, counts in [(n, dict(c)) for n, c in self.counts.items()]:
            total = sum(counts.values())
            if not total:
                continue
            finished = sum(counts[s] for s in TaskState if s.is_terminal)
            bar = ProgressBar(total=total, completed=finished, width=30,
                              complete_style="red" if counts[TaskState.FAILED] else "green",
                              finished_style="red" if counts[TaskState.FAILED] else "green")
            table.add_row(name, *(str(counts[s]) for s in TaskState), bar,
                          f"{finished}/{total}")
        return table

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()  # leaves the final table on the screen


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class ProgressPlugin:
    """One engine's observer that shows its :class:`ProgressDisplay` on ``console`` from the
    engine's start to its shutdown. ``create(progress=True)`` adds it when there is a
    terminal to draw on.
    """

    plugin_name = "asyncflow.progress"

    def __init__(self, console: Console) -> None:
        self.console = console
        self.display: ProgressDisplay | None = None

    @hookimpl
    def asyncflow_engine_started(self, engine: WorkflowEngine) -> None:
        display = ProgressDisplay(engine, self.console)
        try:
            display.start()
        except Exception as exc:  # rich allows one live display per console at a time
            log.warning("no progress display for %s: %s", engine.uid, exc)
            return
        self.display = display

    @hookimpl
    def asyncflow_task_created(self, task: TaskRecord) -> None:
        if self.display is not None:
            self.display.created(task)

    @hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, old: TaskState,
                                     new: TaskState) -> None:
        if self.display is not None:
            self.display.changed(task, old, new)

    @hookimpl
    def asyncflow_engine_stopped(self) -> None:
        display, self.display = self.display, None
        if display is not None:
            display.stop()
