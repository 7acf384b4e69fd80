"""``asyncflow report RUN_DIR``: a run's journal as one self-contained HTML page.

The page works offline (no script, no font, no stylesheet fetched from anywhere): a timeline
of every task and block drawn as inline SVG, grouped by block, workflow scope and backend and
colored by outcome, with a tooltip per bar; then the summary tables: counts by backend and
state, the workflows (scopes and blocks) with their counts and spans, durations per task
function, and the failures with their errors. ``--png`` draws the same
timeline with matplotlib (``pip install 'asyncflow-core[report]'``).

Reading the journal and laying the timeline out (:func:`layout`) is separate from drawing it,
so the SVG and the PNG show the same rows.
"""

from __future__ import annotations

import html
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from asyncflow.journal import Run, TaskRun, read_run

__all__ = ["Timeline", "layout", "write_html", "write_png", "write_report"]

OUTCOMES = {  # outcome -> (fill color, what the legend says)
    "done": ("#3a9e5f", "done"),
    "failed": ("#d64541", "failed"),
    "cancelled": ("#e8a33d", "cancelled"),
    "resumed": ("#9eadc2", "resumed from an earlier session"),
    "unfinished": ("#8e7cc3", "not finished (still running, or the run was killed)"),
}
DEPENDENCY_FAILURE = "DependencyFailureError"
NONE = "\N{EN DASH}"  # an empty cell


# -- layout ----------------------------------------------------------------------------------


@dataclass
class Bar:
    """One task or block on the timeline, in seconds since the run's first event."""

    task: TaskRun
    start: float
    end: float
    created: float
    outcome: str
    retries: list[float] = field(default_factory=list)  # when earlier attempts failed

    @property
    def tooltip(self) -> str:
        t = self.task
        lines = [f"{t.name} ({t.uid})", f"{t.kind} on {t.backend or 'the engine'}"
                 if t.kind == "block" or t.backend else t.kind,
                 f"{self.outcome}, {_duration(self.end - self.start)}"
                 f" (waited {_duration(self.start - self.created)})"]
        if t.block:
            lines.append(f"in block {t.block}")
        if t.workflow and t.workflow != t.block:
            lines.append(f"in workflow {t.workflow}")
        if t.attempts > 1:
            lines.append(f"{t.attempts} attempts")
        if t.error_type:
            lines.append(f"{t.error_type}: {t.error or ''}"[:300])
        if t.exit_code not in (None, 0):
            lines.append(f"exit code {t.exit_code}")
        return "\n".join(lines)


@dataclass
class Row:
    """One line of the timeline: a group's header (a block's own bar) or a lane of tasks."""

    label: str
    bars: list[Bar]
    header: bool = False
    depth: int = 0


@dataclass
class Timeline:
    """The rows of a run's timeline and its time span, ready to draw."""

    run: Run
    rows: list[Row]
    span: float  # seconds from the first event to the last
    origin: float  # epoch seconds of the first event


def layout(run: Run) -> Timeline:
    """Group the run's tasks and pack each group's bars into as few lanes as fit.

    Tasks outside any block are grouped by workflow scope and backend; each block gets a
    header row with its own bar, then lanes of its direct member tasks by scope (when one
    was opened inside the block) and backend; nested blocks follow their parent, indented.
    """
    tasks = list(run.tasks.values())
    times = [t for task in tasks for t in (task.created, task.started, task.finished)
             if t is not None]
    origin = min(times, default=run.info["started"])
    last = max(times, default=origin)
    bars = {task.uid: _bar(task, origin, last - origin) for task in tasks}
    children: dict[str | None, list[TaskRun]] = defaultdict(list)
    for task in tasks:
        children[task.block if task.block in run.tasks else None].append(task)

    rows: list[Row] = []
    top = [t for t in children[None] if t.kind != "block"]
    rows += _lanes(top, bars, None, depth=0)

    def add_block(block: TaskRun, depth: int) -> None:
        rows.append(Row(f"{block.name} · {block.uid}", [bars[block.uid]], header=True,
                        depth=depth))
        members = children[block.uid]
        rows.extend(_lanes([t for t in members if t.kind != "block"], bars, block.uid,
                           depth + 1))
        for inner in members:
            if inner.kind == "block":
                add_block(inner, depth + 1)

    for task in children[None]:
        if task.kind == "block":
            add_block(task, 0)
    return Timeline(run, rows, max(last - origin, 1e-3), origin)


def _bar(task: TaskRun, origin: float, span: float) -> Bar:
    created = (task.created or origin) - origin
    if task.finished is None:
        outcome, end = "unfinished", span
    else:
        outcome = "resumed" if task.resumed else task.state.lower()
        end = task.finished - origin
    start = task.started - origin if task.started is not None else end
    retries = [t - origin for t, *_ in task.failed_attempts]
    return Bar(task, start, max(end, start), created, outcome, retries)


def _lanes(tasks: list[TaskRun], bars: dict[str, Bar], block: str | None,
           depth: int) -> list[Row]:
    """Lanes per workflow scope and backend: each bar goes into the first lane of its group
    that is free when it starts. Inside ``block``, its own scope goes untitled."""
    groups: dict[tuple[str | None, str], list[Bar]] = defaultdict(list)
    for task in tasks:
        scope = task.workflow if task.workflow != block else None
        groups[scope, task.backend or "not submitted"].append(bars[task.uid])
    rows: list[Row] = []
    for (scope, backend), group in groups.items():
        title = scope if scope is not None else "workflow" if block is None else None
        lanes: list[list[Bar]] = []
        ends: list[float] = []
        for bar in sorted(group, key=lambda b: (b.start, b.end)):
            for i, end in enumerate(ends):
                if end <= bar.start:
                    lanes[i].append(bar)
                    ends[i] = bar.end
                    break
            else:
                lanes.append([bar])
                ends.append(bar.end)
        for i, lane in enumerate(lanes):
            label = (f"{title} · {backend}" if title else backend) if i == 0 else ""
            rows.append(Row(label, lane, depth=depth))
    return rows


# -- SVG -------------------------------------------------------------------------------------

_LABEL_W, _PLOT_W, _ROW_H, _TOP, _RIGHT = 250, 880, 16, 34, 16


def svg(timeline: Timeline) -> str:
    """The timeline as an ``<svg>`` element: no external resource, tooltips as ``<title>``."""
    width = _LABEL_W + _PLOT_W + _RIGHT
    height = _TOP + len(timeline.rows) * _ROW_H + 8
    scale = _PLOT_W / timeline.span
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" class="timeline" role="img" '
           f'aria-label="timeline of {len(timeline.run.tasks)} tasks and blocks">']
    for i, row in enumerate(timeline.rows):  # group bands, so lanes read as one group
        if row.header or (i == 0 and row.label):
            end = next((j for j in range(i + 1, len(timeline.rows))
                        if timeline.rows[j].header or (timeline.rows[j].label
                                                       and timeline.rows[j].depth <= row.depth)),
                       len(timeline.rows))
            shade = "band-a" if sum(r.header for r in timeline.rows[:i]) % 2 else "band-b"
            out.append(f'<rect class="{shade}" x="0" y="{_TOP + i * _ROW_H}" width="{width}" '
                       f'height="{(end - i) * _ROW_H}"/>')
    for tick, label in _ticks(timeline.span):
        x = _LABEL_W + tick * scale
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" '
                   f'y2="{height - 8}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{_TOP - 10}">{label}</text>')
    for i, row in enumerate(timeline.rows):
        y = _TOP + i * _ROW_H
        if row.label:
            indent = 8 + row.depth * 12
            text = _shorten(row.label, 36 - row.depth * 2)
            out.append(f'<text class="{"group" if row.header else "lane"}" x="{indent}" '
                       f'y="{y + 12}">{html.escape(text)}</text>')
        for bar in row.bars:
            out.extend(_svg_bar(bar, y, scale, row.header))
    out.append("</svg>")
    return "\n".join(out)


def _svg_bar(bar: Bar, y: float, scale: float, header: bool) -> Iterator[str]:
    x0 = _LABEL_W + bar.start * scale
    w = max((bar.end - bar.start) * scale, 3.0)
    css = f"bar {bar.outcome}{' block' if header else ''}{' thin' if w < 6 else ''}"
    top, h = (y + 1, _ROW_H - 2) if header else (y + 2, _ROW_H - 4)
    yield (f'<rect class="{css}" x="{x0:.1f}" y="{top}" width="{w:.1f}" height="{h}" rx="2">'
           f"<title>{html.escape(bar.tooltip)}</title></rect>")
    for when in bar.retries:
        x = _LABEL_W + when * scale
        yield f'<line class="retry" x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + 15}"/>'
    if w > 60 and not header:
        label = _shorten(bar.task.name, int(w / 7))
        yield f'<text class="inbar" x="{x0 + 3:.1f}" y="{y + 11.5}">{html.escape(label)}</text>'


def _ticks(span: float) -> list[tuple[float, str]]:
    """About eight round ticks from 0 to ``span`` seconds."""
    raw = span / 8
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    for unit in (60.0, 3600.0):  # minutes and hours tick on 1, 2, 5, 10, 15, 30
        if raw >= unit:
            step = next((m * unit for m in (1, 2, 5, 10, 15, 30, 60) if m * unit >= raw),
                        step)
    count = int(span / step) + 1
    return [(i * step, _clock(i * step, step)) for i in range(count)]


def _clock(seconds: float, step: float) -> str:
    if step >= 60:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h{minutes:02d}" if hours else f"{minutes}m"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{seconds:.{decimals}f}s"


def _shorten(text: str, limit: int) -> str:
    limit = max(limit, 4)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:#1f2933;margin:24px 32px;max-width:1220px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#52606d;margin:0 0 12px}.meta b{color:#1f2933}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:right;vertical-align:top}
th.l,td.l{text-align:left}th{background:#f5f7fa;font-weight:600}
td.text{text-align:left;max-width:560px;white-space:pre-wrap;word-break:break-word}
.legend span{display:inline-block;margin-right:16px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
  vertical-align:-1px}
.scroll{overflow-x:auto;border:1px solid #e4e7eb;border-radius:6px}
svg.timeline{display:block}
.band-a{fill:#ffffff}.band-b{fill:#f7f9fb}
.grid{stroke:#e4e7eb;stroke-width:1}.tick{font-size:11px;fill:#7b8794;text-anchor:middle}
.group{font-size:12px;font-weight:600;fill:#1f2933}.lane{font-size:11px;fill:#52606d}
.inbar{font-size:10px;fill:#fff;pointer-events:none}
.retry{stroke:#8a1c1c;stroke-width:2}
.bar{stroke:#fff;stroke-width:.8}.bar.thin{stroke:none}
.bar.block{fill-opacity:.28;stroke-width:1.2}
.failed-count{color:#d64541;font-weight:600}
"""


def write_html(run: Run, path: Path) -> Path:
    """Write the report page of ``run`` to ``path``."""
    timeline = layout(run)
    colors = "".join(f".bar.{name}{{fill:{color}}}.bar.block.{name}{{stroke:{color}}}"
                     for name, (color, _) in OUTCOMES.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>AsyncFlow run {html.escape(run.uid)}</title>",
        f"<style>{_CSS}{colors}</style></head><body>",
        f"<h1>AsyncFlow run <code>{html.escape(run.uid)}</code></h1>",
        _overview(run),
        "<h2>Timeline</h2>",
        '<p class="legend">' + "".join(
            f'<span><i style="background:{color}"></i>{html.escape(text)}</span>'
            for color, text in OUTCOMES.values()) +
        '<span><i style="background:#8a1c1c;width:2px"></i>failed attempt, retried</span>'
        "</p>",
        '<p class="meta">Hover over a bar for the task\'s details. Blocks are the pale bars '
        "heading their group.</p>",
        f'<div class="scroll">{svg(timeline)}</div>',
        "<h2>Tasks by backend and state</h2>", _counts_table(run),
        "<h2>Workflows</h2>", _workflows_table(run),
        "<h2>Durations by task</h2>", _durations_table(run),
        "<h2>Failures</h2>", _failures(run), _exited_services(run),
        f'<p class="meta">Written by asyncflow report from {html.escape(str(run.path))} on '
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p>",
        "</body></html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _overview(run: Run) -> str:
    info = run.info
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
    wall = (info["stopped"] - info["started"]) if info["stopped"] else None
    states = Counter(t.state for t in run.tasks.values() if t.kind != "block")
    failed = states.get("FAILED", 0)
    items = [
        f"<b>{sum(states.values())}</b> tasks, "
        f"<b>{sum(t.kind == 'block' for t in run.tasks.values())}</b> blocks",
        f"<span class=\"failed-count\">{failed} failed</span>" if failed else "none failed",
        f"started <b>{started}</b>",
        f"wall time <b>{_duration(wall)}</b>" if wall is not None
        else "<b>did not stop cleanly</b> (killed, or still running)",
        f"backends <b>{html.escape(', '.join(_backends(info)))}</b>",
        f"session <b>{run.session}</b> of {len(run.sessions)}",
    ]
    if info.get("script"):
        items.append(f"script <code>{html.escape(str(info['script']))}</code>")
    if info.get("dry_run"):
        items.append("<b>dry run</b>")
    if info.get("error"):
        items.append(f"stopped by <b>{html.escape(str(info['error']))}</b>")
    return f'<p class="meta">{" · ".join(items)}</p>'


def _backends(info: dict[str, object]) -> list[str]:
    import json

    try:
        return [str(name) for name in json.loads(str(info.get("backends") or "[]"))]
    except ValueError:
        return []


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], text: int = 1) -> str:
    """A table whose first ``text`` columns are words (left-aligned), the rest numbers."""
    def cls(i: int) -> str:
        return ' class="l"' if i < text else ""

    head_html = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell if cell.startswith("<td") else f"<td{cls(i)}>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head_html}</tr></thead><tbody>{body}</tbody></table>"


_STATES = ("DONE", "FAILED", "CANCELLED", "RUNNING", "PENDING")


def _counts_table(run: Run) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    resumed: Counter[str] = Counter()
    for task in run.tasks.values():
        key = "blocks" if task.kind == "block" else task.backend or "not submitted"
        counts[key][task.state] += 1
        resumed[key] += task.resumed
    rows = []
    for key, states in counts.items():
        rows.append([html.escape(key), str(sum(states.values())),
                     *(str(states.get(s, 0)) for s in _STATES), str(resumed[key])])
    return _table(["backend", "total", *(s.lower() for s in _STATES), "resumed"], rows)


def _workflows_table(run: Run) -> str:
    """One row per workflow scope and block: its tasks by state, and when it ran."""
    members: dict[str, list[TaskRun]] = defaultdict(list)
    for task in run.tasks.values():
        if task.workflow is not None:
            members[task.workflow].append(task)
    if not members:
        return "<p>No task was called in a workflow scope or a block.</p>"
    rows = []
    for workflow, tasks in members.items():
        block = run.tasks.get(workflow)
        label = f"{block.name} · {workflow} (block)" if block is not None \
            and block.kind == "block" else workflow
        states = Counter(t.state for t in tasks)
        starts = [s for t in tasks if (s := t.started or t.created) is not None]
        ends = [t.finished for t in tasks if t.finished is not None]
        span = max(ends) - min(starts) if starts and ends else None
        rows.append([html.escape(label), str(len(tasks)),
                     *(str(states.get(s, 0)) for s in _STATES[:3]),
                     str(sum(t.state not in _STATES[:3] for t in tasks)), _duration(span)])
    return _table(["workflow", "tasks and blocks", "done", "failed", "cancelled",
                   "unfinished", "span"], rows)


def _durations_table(run: Run) -> str:
    by_name: dict[str, list[TaskRun]] = defaultdict(list)
    for task in run.tasks.values():
        by_name[f"{task.name} ({task.kind})" if task.kind != "function" else task.name].append(
            task)
    rows = []
    for name, tasks in sorted(by_name.items(), key=lambda item: -len(item[1])):
        ran = [d for t in tasks if not t.resumed and (d := t.duration) is not None]
        states = Counter(t.state for t in tasks)
        rows.append([
            html.escape(name), str(len(tasks)), str(states.get("DONE", 0)),
            str(states.get("FAILED", 0)), str(sum(t.attempts - 1 for t in tasks)),
            *((_duration(f(ran)) if ran else NONE)
              for f in (min, statistics.median, max, sum)),
        ])
    return _table(["task", "calls", "done", "failed", "retries", "shortest", "median",
                   "longest", "total"], rows)


def _failures(run: Run, limit: int = 200) -> str:
    failed = [t for t in run.tasks.values() if t.state == "FAILED"]
    if not failed:
        return "<p>No task failed.</p>"
    roots = [t for t in failed if t.error_type != DEPENDENCY_FAILURE]
    knock_on = len(failed) - len(roots)
    rows = [[f"<code>{html.escape(t.uid)}</code>", html.escape(t.name),
             html.escape(t.block or NONE), html.escape(t.backend or NONE), str(t.attempts),
             NONE if t.exit_code is None else str(t.exit_code),
             f'<td class="text"><b>{html.escape(t.error_type or "?")}</b>: '
             f'{html.escape(t.error or "")}</td>']
            for t in sorted(roots, key=lambda t: t.finished or 0)[:limit]]
    parts = [_table(["task", "name", "block", "backend", "attempts", "exit code", "error"],
                    rows, text=4).replace("<th>error</th>", '<th class="l">error</th>')]
    if len(roots) > limit:
        parts.append(f"<p>… and {len(roots) - limit} more.</p>")
    if knock_on:
        parts.append(f"<p>{knock_on} more task(s) failed without running because a task they "
                     f"depend on failed ({DEPENDENCY_FAILURE}).</p>")
    return "\n".join(parts)


def _exited_services(run: Run) -> str:
    exited = sorted(((t.exited, t) for t in run.tasks.values() if t.exited is not None),
                    key=lambda pair: pair[0][0])  # by time
    if not exited:
        return ""
    rows = [[f"<code>{html.escape(t.uid)}</code>", html.escape(t.name),
             NONE if code is None else str(code),
             f'<td class="text">{html.escape(error or "")}</td>']
            for (_, code, error), t in exited]
    return ("<h2>Services that ended during the run</h2>" +
            _table(["service", "name", "exit code", "error"], rows, text=2)
            .replace("<th>error</th>", '<th class="l">error</th>'))


# -- PNG -------------------------------------------------------------------------------------


def write_png(run: Run, path: Path) -> Path:
    """Draw the timeline of ``run`` with matplotlib (the ``report`` extra) into ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, and none is touched
        import matplotlib.pyplot as plt
        from matplotlib.artist import Artist
        from matplotlib.collections import LineCollection, PolyCollection
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise ImportError("asyncflow report --png needs matplotlib: "
                          "pip install 'asyncflow-core[report]'") from None
    timeline = layout(run)
    n = max(len(timeline.rows), 1)
    height = min(1.6 + n * 0.2, 60.0)
    fig, ax = plt.subplots(figsize=(14, height), dpi=110)
    boxes: list[list[tuple[float, float]]] = []
    colors: list[str] = []
    alphas: list[float] = []
    edges: list[str] = []
    retries: list[list[tuple[float, float]]] = []
    min_width = timeline.span / 400  # a zero-length task stays visible
    for i, row in enumerate(timeline.rows):
        y = n - 1 - i
        pad = 0.08 if row.header else 0.18
        for bar in row.bars:
            x0, x1 = bar.start, max(bar.end, bar.start + min_width)
            boxes.append([(x0, y + pad), (x1, y + pad), (x1, y + 1 - pad), (x0, y + 1 - pad)])
            colors.append(OUTCOMES[bar.outcome][0])
            alphas.append(0.35 if row.header else 1.0)
            # White edges part adjacent bars; a sliver keeps its color to stay visible.
            edges.append("white" if x1 - x0 > 3 * min_width else colors[-1])
            retries.extend([(t, y + 0.05), (t, y + 0.95)] for t in bar.retries)
    faces = [matplotlib.colors.to_rgba(c, a) for c, a in zip(colors, alphas, strict=True)]
    ax.add_collection(PolyCollection(boxes, facecolors=faces, edgecolors=edges,
                                     linewidths=0.8))
    ax.add_collection(LineCollection(retries, colors="#8a1c1c", linewidths=1.5))
    ax.set_xlim(0, timeline.span * 1.01)
    ax.set_ylim(0, n)
    labelled = [(n - 1 - i + 0.5, ("  " * row.depth) + _shorten(row.label, 40))
                for i, row in enumerate(timeline.rows) if row.label]
    ax.set_yticks([y for y, _ in labelled], [label for _, label in labelled], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), [r for r in timeline.rows if r.label],
                         strict=True):
        tick.set_fontweight("bold" if row.header else "normal")
    ax.set_xlabel("seconds since the run's first event")
    ax.grid(axis="x", color="#e4e7eb")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"AsyncFlow run {run.uid}: {len(run.tasks)} tasks and blocks", loc="left",
                 fontsize=11)
    handles: list[Artist] = [Patch(color=c, label=text) for c, text in OUTCOMES.values()]
    handles.append(Line2D([], [], color="#8a1c1c", linewidth=1.5, label="failed attempt, retried"))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8,
               frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, output: str | Path | None = None,
                 png: str | Path | None = None, session: int | None = None) -> Path:
    """Read the journal in ``run_dir`` and write the HTML report (``run_dir/report.html`` by
    default) and, if asked, the timeline as PNG. Returns the HTML's path.
    """
    run = read_run(run_dir, session)
    target = Path(output) if output is not None else run.path.parent / "report.html"
    write_html(run, target)
    if png is not None:
        write_png(run, Path(png))
    return target
