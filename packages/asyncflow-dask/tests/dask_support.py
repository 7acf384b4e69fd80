"""Helpers of the Dask tests to await what task bodies in other processes tell (worker pids,
"I started") without sleeping. A plain module, not the conftest, so test modules import it by
a name no other package's tests use. The backend's own reports go to an
:class:`asyncflow.testing.Recorder`."""

from __future__ import annotations

import asyncio
import contextlib

WITHIN = 60.0  # seconds any awaited event may take before the test fails



class Inbox:
    """A TCP server on 127.0.0.1 that task bodies in other processes report to (see
    ``dask_bodies.report``): the test awaits each ``(label, pid)`` instead of polling files.

    Bodies that wait (``dask_bodies.through_gate``) stay blocked until :meth:`open_gate`.
    """

    def __init__(self) -> None:
        self.arrivals: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None
        self._waiting: list[asyncio.StreamWriter] = []
        self._open = False

    async def __aenter__(self) -> Inbox:
        self._server = await asyncio.start_server(self._receive, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.open_gate()  # never leave a body blocked after the test
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        label, pid = (await reader.readline()).decode().split()
        self._waiting.append(writer)
        if self._open:
            self.open_gate()
        await self.arrivals.put((label, int(pid)))

    def open_gate(self) -> None:
        """Let every waiting body (and every later one) go on."""
        self._open = True
        writers, self._waiting = self._waiting, []
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                writer.write(b"go")
            writer.close()

    async def next(self) -> tuple[str, int]:
        """The next ``(label, pid)`` a body reported (within :data:`WITHIN` seconds)."""
        async with asyncio.timeout(WITHIN):
            return await self.arrivals.get()
