"""Task bodies for the Dask tests, in a module so Dask workers import them by reference.

LocalCluster workers inherit this process's ``sys.path``; the external ``dask worker``
processes of ``test_cluster.py`` get this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

Address = tuple[str, int]


def report(address: Address, label: str, wait: bool = False) -> int:
    """Tell the test's ``Inbox`` that ``label`` runs in this process; with ``wait``, block
    until the test opens its gate. Returns this process's pid."""
    with socket.create_connection(tuple(address), timeout=60) as conn:
        conn.sendall(f"{label} {os.getpid()}\n".encode())
        if wait:
            conn.recv(16)
    return os.getpid()


def through_gate(address: Address, label: str) -> str:
    report(address, label, wait=True)
    return label


def pid_through_gate(address: Address, label: str) -> int:
    return report(address, label, wait=True)


def report_then_sleep(address: Address, label: str, seconds: float) -> int:
    """Tell the test which worker process runs this body, then simulate long work."""
    pid = report(address, label)
    time.sleep(seconds)
    return pid


async def report_then_sleep_async(address: Address, label: str, seconds: float) -> int:
    pid = report(address, label)
    await asyncio.sleep(seconds)
    return pid


def interval(seconds: float) -> tuple[float, float]:
    """Simulate ``seconds`` of work; return when it started and ended."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def megabytes(n: int) -> bytes:
    return b"x" * (n * 2**20)


def size(data: bytes) -> int:
    return len(data)


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def echo_pid(pid: int) -> int:
    return pid
