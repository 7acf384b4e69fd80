"""``asyncflow report``: one offline HTML page with every task and block of a run on a
timeline, the summary tables and the failures; the same timeline as PNG.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path

import pytest
from loop_backend import FunctionsOnlyBackend, LoopBackend

from asyncflow import WorkflowEngine
from asyncflow.cli import main
from asyncflow.journal import FILENAME, read_run
from asyncflow.report import layout, write_report

TESTS = Path(__file__).parent
SVG = "{http://www.w3.org/2000/svg}"


async def sample_run(work_dir: Path) -> Path:
    """A run with blocks, two backends, a retry, a failure, a knock-on failure, a cancel."""
    flow = await WorkflowEngine.create(backend=[LoopBackend(), FunctionsOnlyBackend()],
                                       work_dir=work_dir, journal=True)
    attempts: list[int] = []
    started = asyncio.Event()

    @flow.function_task
    async def simulate(i: int) -> int:
        await asyncio.sleep(0.005 * (i % 4))
        return i

    @flow.function_task(backend="functions_only", retries=1)
    async def analyse(x: int) -> int:
        attempts.append(x)
        if x == 3 and attempts.count(3) == 1:
            raise ConnectionError("flaky store")
        if x == 5:
            raise ValueError("the <model> & its \"fit\" diverged")
        return 2 * x

    @flow.function_task
    async def publish(values: list[int]) -> int:
        return sum(values)

    @flow.function_task
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    @flow.block
    async def stage(n: int) -> int:
        results = [analyse(simulate(n * 3 + i)) for i in range(3)]
        return await publish(results)

    outcomes = await asyncio.gather(*(stage(n) for n in range(3)), return_exceptions=True)
    assert [isinstance(o, Exception) for o in outcomes] == [False, True, False]
    stuck = forever()
    await asyncio.wait_for(started.wait(), 10)
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)
    await flow.shutdown()
    return work_dir / flow.uid


def svg_of(page: str) -> ET.Element:
    match = re.search(r"<svg .*?</svg>", page, re.S)
    assert match, "no inline svg"
    return ET.fromstring(match.group(0))  # well-formed XML, or this raises


async def test_the_page_holds_every_task_and_block_of_the_run(tmp_path: Path) -> None:
    run_dir = await sample_run(tmp_path)
    page_path = write_report(run_dir)
    assert page_path == run_dir / "report.html"
    page = page_path.read_text()
    run = read_run(run_dir)
    assert len(run.tasks) == 3 + 3 * 7 + 1  # blocks, per block 3+3+1 tasks, forever
    bars = svg_of(page).iter(f"{SVG}rect")
    titles = [bar.findtext(f"{SVG}title") or "" for bar in bars
              if "bar" in (bar.get("class") or "").split()]
    assert len(titles) == len(run.tasks)  # one bar per task and block, none twice
    for task in run.tasks.values():
        assert sum(title.startswith(f"{task.name} ({task.uid})\n") for title in titles) == 1
    classes = [set((bar.get("class") or "").split()) for bar in svg_of(page).iter(f"{SVG}rect")]
    outcomes = {tuple(sorted(c - {"bar", "thin"})) for c in classes if "bar" in c}
    assert {("done",), ("failed",), ("cancelled",), ("block", "done"),
            ("block", "failed")} <= outcomes


async def test_the_summary_counts_durations_and_failures(tmp_path: Path) -> None:
    page = write_report(await sample_run(tmp_path)).read_text()
    counts = page.split("Tasks by backend and state")[1].split("</table>")[0]
    cells = lambda name: re.findall(  # noqa: E731
        r"<td[^>]*>([^<]*)</td>", counts.split(f">{name}</td>")[1].split("</tr>")[0])
    # columns: total, done, failed, cancelled, running, pending, resumed
    assert cells("loop") == ["12", "11", "0", "1", "0", "0", "0"]  # simulate, publish, forever
    assert cells("functions_only") == ["9", "8", "1", "0", "0", "0", "0"]  # analyse
    assert cells("not submitted") == ["1", "0", "1", "0", "0", "0", "0"]  # publish after 5
    assert cells("blocks") == ["3", "2", "1", "0", "0", "0", "0"]
    durations = page.split("Durations by task")[1].split("</table>")[0]
    # 9 calls, 8 done, 1 failed, 2 retries (one that then worked, one that failed again)
    assert re.search(r">analyse</td><td>9</td><td>8</td><td>1</td><td>2</td>", durations)
    failures = page.split("<h2>Failures</h2>")[1]
    # the root failure, with its error escaped; the knock-on ones counted, not listed
    assert "the &lt;model&gt; &amp; its &quot;fit&quot; diverged" in failures
    assert "ValueError" in failures
    assert "failed without running because a task they depend on failed" in failures


async def test_the_page_needs_no_network(tmp_path: Path) -> None:
    page = write_report(await sample_run(tmp_path)).read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page and " src=" not in page and " href=" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace: a name, not a fetch


async def test_layout_groups_by_block_and_backend(tmp_path: Path) -> None:
    run = read_run(await sample_run(tmp_path))
    timeline = layout(run)
    headers = [row for row in timeline.rows if row.header]
    assert [row.label.split(" · ")[0] for row in headers] == ["stage"] * 3
    first = timeline.rows.index(headers[0])
    group = timeline.rows[first + 1:timeline.rows.index(headers[1])]
    members = {bar.task.uid for row in group for bar in row.bars}
    block = headers[0].bars[0].task.uid
    assert members == {t.uid for t in run.tasks.values() if t.block == block}
    assert {row.label for row in group if row.label} == {"loop", "functions_only"}
    for row in timeline.rows:  # lanes never overlap
        spans = sorted((b.start, b.end) for b in row.bars)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


async def test_the_cli_writes_the_page_and_the_png(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = await sample_run(tmp_path)
    page, png = tmp_path / "out" / "r.html", tmp_path / "out" / "t.png"
    assert await asyncio.to_thread(main, ["report", str(run_dir), "-o", str(page),
                                          "--png", str(png)]) == 0
    assert capsys.readouterr().out.split() == [str(page), str(png)]
    assert "<svg" in page.read_text()
    import matplotlib.image

    image = matplotlib.image.imread(png)
    height, width = image.shape[:2]
    assert width > 1000 and height > 300
    # Not blank: the bars' green, red and amber are drawn.
    pixels = {tuple((image[y, x, :3] * 255).round().astype(int)) for y in range(0, height, 2)
              for x in range(0, width, 2)}
    assert {(58, 158, 95), (214, 69, 65), (232, 163, 61)} <= pixels


def test_the_cli_explains_a_folder_without_a_journal(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no run journal" in capsys.readouterr().err


CHILD = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from loop_backend import LoopBackend
from asyncflow import WorkflowEngine

async def main():
    flow = await WorkflowEngine.create(backend=LoopBackend(), work_dir=sys.argv[1],
                                       uid="killed", journal=True)

    @flow.function_task
    async def quick(i):
        return i

    @flow.function_task
    async def hangs():
        await asyncio.Event().wait()

    await asyncio.gather(*(quick(i) for i in range(5)))
    await hangs()

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_a_killed_run_shows_what_never_finished(tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(CHILD.format(tests=str(TESTS))))
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    journal = tmp_path / "killed" / FILENAME
    try:
        # Another process: watch its journal until the hanging task is recorded RUNNING.
        deadline = time.monotonic() + 30
        while not _running(journal, "hangs"):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    page = write_report(tmp_path / "killed").read_text()
    assert "did not stop cleanly" in page
    hang = next(t for t in read_run(tmp_path / "killed").tasks.values() if t.name == "hangs")
    assert re.search(rf'class="bar unfinished[^"]*"[^>]*><title>hangs \({hang.uid}\)', page)


def _running(journal: Path, name: str) -> bool:
    if not journal.exists():
        return False
    try:
        with closing(sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT 1 FROM events WHERE name = ? AND state = 'RUNNING'",
                                (name,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
