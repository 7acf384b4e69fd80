"""Task bodies the chaos scenarios send to worker processes: importable, so they pickle by
reference."""

from __future__ import annotations

import os
import time


def work(i: int, seconds: float) -> tuple[int, int]:
    """Work a little; say which process did it."""
    time.sleep(seconds)
    return i, os.getpid()


def sleep_in_process(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
