"""One submitter per backend: the tasks released in a loop iteration go out in one ``submit``.

The submitter is an asyncio task that lives as long as the engine. It sleeps on a future
until a task is released to its backend; the first release of an iteration wakes it, so it
runs in the next iteration, once every release of this one has joined the batch. Tasks
released while a ``submit`` is in flight form the next batch, sent an iteration after that
submit returns. A long-lived task woken through a future costs a fraction of creating a task
per batch, which a chain of dependent tasks would do at every level.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable

from asyncflow.backend import ExecutionBackend, TaskSpec

SubmitFailed = Callable[[ExecutionBackend, list[TaskSpec], Exception], None]

log = logging.getLogger("asyncflow.engine")


class Submitter:
    """Collects one backend's ready tasks and submits them, a batch per loop iteration."""

    __slots__ = ("_closing", "_wake", "backend", "batch", "on_error", "task")

    def __init__(self, backend: ExecutionBackend, loop: asyncio.AbstractEventLoop,
                 on_error: SubmitFailed) -> None:
        self.backend = backend
        self.on_error = on_error
        # By uid, in release order: withdrawing one of many (a shutdown cancels them all) is
        # a lookup, not a scan of the batch.
        self.batch: dict[str, TaskSpec] = {}
        self._wake: asyncio.Future[None] | None = None  # set while the submitter sleeps
        self._closing = False
        # A fresh context: a caller's (a block's, say) must not leak into submit, nor into
        # the bodies a backend runs on this loop.
        self.task = loop.create_task(self._run(loop), name=f"asyncflow submit to {backend.name}",
                                     context=contextvars.Context())

    def add(self, spec: TaskSpec) -> None:
        """Put a ready task in the next batch."""
        self.batch[spec.uid] = spec
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    def withdraw(self, spec: TaskSpec) -> bool:
        """Take a task out of the batch if it has not been submitted yet."""
        if self.batch.get(spec.uid) is spec:
            del self.batch[spec.uid]
            return True
        return False

    def close(self) -> None:
        """Stop once the batch in flight, if any, has been submitted."""
        self._closing = True
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                wake = loop.create_future()
                if self.batch:  # released while the last submit ran: send them next iteration
                    wake.set_result(None)
                elif self._closing:
                    return
                else:
                    self._wake = wake
                await wake
                if not self.batch:  # woken to close, or every task of the batch was cancelled
                    continue
                specs, self.batch = list(self.batch.values()), {}
                try:
                    await self.backend.submit(specs)
                except Exception as exc:  # the batch fails, the engine goes on
                    log.error("backend %r failed to submit %d task(s); they fail with it",
                              self.backend.name, len(specs), exc_info=exc)
                    try:
                        self.on_error(self.backend, specs, exc)
                    except Exception:  # a bug: this backend's later batches must still go out
                        log.exception("the engine raised while failing a batch backend %r "
                                      "could not submit", self.backend.name)
                del specs  # not held (nor their arguments) while the submitter sleeps
        finally:
            self._wake = None  # cancelled while asleep: a later add() must not wake a dead future
