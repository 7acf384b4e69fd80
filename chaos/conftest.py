"""The chaos suite's fixtures: its size (``--short`` for CI), the figures file every scenario
writes to, and the check that no test leaves a child process behind."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).parent.parent
# Process-wide helpers multiprocessing starts once for the interpreter's life.
PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
Record = Callable[[str, str, object], None]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--short", action="store_true",
                     help="the short form CI runs: smaller sizes, fewer repetitions")


@pytest.fixture(scope="session")
def short(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--short"))


@pytest.fixture(scope="session")
def figures_file(short: bool) -> Path:
    """ASYNCFLOW_CHAOS_FIGURES (nox sets it), else .nox/chaos-figures/chaos[_ci].jsonl;
    emptied once per run."""
    default = ROOT / ".nox" / "chaos-figures" / ("chaos_ci.jsonl" if short else "chaos.jsonl")
    path = Path(os.environ.get("ASYNCFLOW_CHAOS_FIGURES", default))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


@pytest.fixture
def record(figures_file: Path, short: bool) -> Record:
    """``record(scenario, figure, value)``: one line of the reliability table."""
    command = "nox -s chaos_ci" if short else "nox -s chaos"

    def write(scenario: str, figure: str, value: object) -> None:
        line = {"scenario": scenario, "figure": figure, "value": value, "command": command}
        with figures_file.open("a") as out:
            out.write(json.dumps(line) + "\n")

    return write


def descendants() -> dict[int, str]:
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            found[child.pid] = f"[{child.status()}] " + " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Every test ends with no process of ours left, running or zombie."""
    before = descendants()
    yield
    left = {pid: cmd for pid, cmd in descendants().items()
            if pid not in before and not any(helper in cmd for helper in PYTHON_HELPERS)}
    assert not left, f"processes left behind: {left}"
