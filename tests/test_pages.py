"""Issue 12, point 5: ``asyncflow run`` runs code written with top-level ``await``, the seed
page's own form (and a notebook's), with the exit codes of an ordinary script."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from _probe import clean_environment, run_asyncflow, write

PAGES = Path(__file__).resolve().parents[1] / "examples" / "pages"


def asyncflow_run(script: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_asyncflow("run", str(script), cwd=tmp_path, env=clean_environment(tmp_path),
                         timeout=120)


def check_seed_lines(out: str) -> None:
    for step in ("task1", "task2", "task3"):
        assert len(re.findall(rf"\[\d+\.\d\d\] {step} completed", out)) == 9
    for block in "ABC":
        assert len(re.findall(rf"Processing Block {block} completed at \d+\.\d\d", out)) == 1
    assert re.search(r"\nTotal time running asynchronously is: \d+\.\d\ds\n\Z", out)


def test_the_seed_pages_independent_blocks_as_written(tmp_path: Path) -> None:
    done = asyncflow_run(PAGES / "independent_blocks.py", tmp_path)
    assert done.returncode == 0, done.stderr
    check_seed_lines(done.stdout)
    assert not list(tmp_path.glob("asyncflow.session.*")), "nothing is written unless asked"


def test_the_seed_pages_blocks_with_dependency_as_written(tmp_path: Path) -> None:
    done = asyncflow_run(PAGES / "blocks_with_dependency.py", tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    check_seed_lines(out)
    a, b, c = (out.index(f"Processing Block {block} completed") for block in "ABC")
    assert c > max(a, b), "block C runs after blocks A and B"


TOP_LEVEL = """\
import sys
from radical.asyncflow import WorkflowEngine

flow = await WorkflowEngine.create(backend="noop")
value = await flow.function_task(len)("abc")
await flow.shutdown()
print(__name__, value)
{ending}
"""


@pytest.mark.parametrize(("ending", "code", "stderr"), [
    ("", 0, ""),
    ("sys.exit(3)", 3, ""),
    ("raise ValueError('bad input')", 1, "ValueError: bad input"),
])
@pytest.mark.parametrize("form", ["top-level await", "asyncio.run"])
def test_exit_codes_are_those_of_an_ordinary_script(tmp_path: Path, form: str, ending: str,
                                                    code: int, stderr: str) -> None:
    source = TOP_LEVEL.format(ending=ending)
    if form == "asyncio.run":  # the same script, written the ordinary way
        body = "".join(f"    {line}\n" for line in source.splitlines()[2:])
        source = ("import asyncio, sys\nfrom radical.asyncflow import WorkflowEngine\n\n"
                  f"async def main():\n{body}\nasyncio.run(main())\n")
    done = asyncflow_run(write(tmp_path / "page.py", source), tmp_path)
    assert done.returncode == code, done.stderr
    assert done.stdout == "__main__ Dummy Output\n"
    assert stderr in done.stderr
    if stderr:
        assert 'page.py", line' in done.stderr, "the traceback shows the script's line"


def test_a_syntax_error_names_the_file(tmp_path: Path) -> None:
    done = asyncflow_run(write(tmp_path / "broken.py", "await (\n"), tmp_path)
    assert done.returncode == 1
    assert "broken.py" in done.stderr and "SyntaxError" in done.stderr
