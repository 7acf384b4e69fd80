"""Render the chaos suite's figures (JSON lines) into the table of docs/reliability.md.

    python chaos/render.py [FIGURES] [--write] [--doc docs/reliability.md]

It prints the table; with ``--write`` it also puts it between the page's ``chaos:begin``
and ``chaos:end`` comments, leaving the rest of the page as it is.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def table(lines: list[dict[str, object]]) -> str:
    rows = ["| scenario | figure | value | command |", "|---|---|---|---|"]
    rows += [f"| {line['scenario']} | {line['figure']} | {line['value']} | `{line['command']}` |"
             for line in lines]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="?", type=Path,
                        default=ROOT / ".nox" / "chaos-figures" / "chaos.jsonl")
    parser.add_argument("--write", action="store_true", help="update the page's table")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    lines = [json.loads(text) for text in args.figures.read_text().splitlines() if text]
    print(table(lines))
    if not args.write:
        return
    page = args.doc.read_text()
    block = f"{BEGIN}\n{table(lines)}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(page):
        raise SystemExit(f"{args.doc} has no {BEGIN} ... {END} section for the table")
    args.doc.write_text(pattern.sub(lambda _: block, page))


if __name__ == "__main__":
    main()
