"""What the backends' overhead scripts (``*_overhead.py``) share: where a run happened, and
how its result is kept."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """The interpreter, the cores, the load and the time (UTC) of a run."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def keep(result: dict[str, Any], path: Path, table: str) -> None:
    """Write ``result`` as JSON to ``path`` and print ``table`` and where the JSON went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(table)
    print(f"\nwritten: {path}")
