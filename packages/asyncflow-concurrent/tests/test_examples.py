"""The seed's two examples run as written, end to end, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def run(name: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def count(text: str, event: str) -> int:
    # Bodies print from several threads at once, so a line may hold two events: count them
    # in the whole text.
    return len(re.findall(rf"\[\d+\.\d\d\] {event}", text))


def check_seed_lines(out: str) -> None:
    for step in ("task1", "task2", "task3"):
        assert count(out, f"{step} started") == count(out, f"{step} completed") == 9
    for workflow in ("WF1", "WF2", "WF3"):
        assert count(out, f"{workflow} started") == count(out, f"{workflow} completed") == 3
    for block in ("A", "B", "C"):
        assert len(re.findall(rf"Processing Block {block} completed at \d+\.\d\d", out)) == 1
    assert re.search(r"\nTotal time running asynchronously is: \d+\.\d\ds\n\Z", out)


def test_independent_blocks(tmp_path: Path) -> None:
    check_seed_lines(run("composite_independent_blocks.py", tmp_path))
    assert not list(tmp_path.iterdir()), "nothing is written to disk unless asked for"


def test_blocks_with_dependency(tmp_path: Path) -> None:
    out = run("composite_blocks_with_dependency.py", tmp_path)
    check_seed_lines(out)
    a, b, c = (out.index(f"Processing Block {block} completed") for block in "ABC")
    assert re.findall(r"WF\d (?:started|completed)", out[max(a, b):c]) == [
        "WF1 started", "WF1 completed", "WF2 started", "WF2 completed", "WF3 started",
        "WF3 completed"], "block C's workflows run after blocks A and B, one at a time"


def test_prompt_tasks(tmp_path: Path) -> None:
    out = run("prompt_tasks.py", tmp_path)
    assert out.splitlines() == [f"[summarizer] noted: At T={t} the energy is {e}."
                                for t, e in ((2.0, 0.0), (4.0, 3.0), (8.0, 9.0))]


def test_workflow_scopes(tmp_path: Path) -> None:
    out = run("workflow_scopes.py", tmp_path)
    for name in ("alpha", "beta"):
        assert re.search(rf"^{name}: 2 results, refined 2; tasks carry '{name}', the block "
                         r"'(block\.\d{6})' too, and the block's tasks carry '\1'$", out, re.M)
        assert f'subgraph wf_top_{name}["workflow {name}"]' in out
    assert "audit-0 ran in workflow 'audit'" in out
    from asyncflow.journal import read_run

    (run_dir,) = tmp_path.glob("asyncflow.session.*")
    workflows = [t.workflow for t in read_run(run_dir).tasks.values()]
    assert workflows.count("alpha") == workflows.count("beta") == 4  # 3 tasks and the block
    assert workflows.count("audit") == 1


def test_services_example(tmp_path: Path) -> None:
    out = run("services.py", tmp_path)
    assert re.fullmatch(r"server http_server \(pid \d+\) at 127\.0\.0\.1:\d+: \[200, 200\]\n",
                        out), out
