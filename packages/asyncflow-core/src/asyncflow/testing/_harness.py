"""What the conformance tests drive a backend with: a recording sink, specs, gates.

The :class:`Recorder` is the sink a backend under test reports to. It checks every update
against the contract as it arrives (delivered on the loop's thread, for a task that was
submitted, nothing after a terminal state) and lets a scenario await a task's outcome.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from asyncflow.backend import ExecutionBackend, TaskKind, TaskSpec, TaskState, TaskUpdate

T = TypeVar("T")


class Recorder:
    """A backend's sink that records every update and checks it against the contract.

    Drive a backend directly with it in your own tests:

        recorder = Recorder(timeout=30)  # made on the event loop's thread
        backend.attach(recorder)
        async with backend:
            recorder.expect(spec.uid for spec in specs)
            await backend.submit(specs)
            update = await recorder.terminal(specs[0].uid)
            assert update.state is TaskState.DONE
        assert recorder.violations == []

    Each update is checked as it arrives: delivered on the thread the recorder was made on
    (the loop's), for a uid declared with ``expect()``, ``RUNNING`` at most once, nothing
    after a terminal state, ``FAILED`` carrying an exception. A breach does not raise (it
    may happen on another thread); it is added to ``violations``.

    Args:
        timeout: Seconds each ``await`` on the recorder may take before it raises
            ``TimeoutError`` naming what it waited for; ``None`` waits for ever.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.thread = threading.get_ident()  # built on the loop that runs the scenario
        self.updates: dict[str, list[TaskUpdate]] = {}
        """Every update received, by uid, in arrival order."""
        self.violations: list[str] = []
        """One sentence per contract breach seen; empty for a conforming backend."""
        self.waiting_for = "nothing"
        """What the last await on the recorder waited for (for a timeout's message)."""
        self._expected: set[str] = set()
        self._waiters: dict[tuple[str, bool], list[asyncio.Future[TaskUpdate]]] = {}

    def expect(self, uids: Iterable[str]) -> None:
        """Declare the uids about to be submitted: an update for any other is a violation."""
        self._expected.update(uids)

    def __call__(self, update: object) -> None:
        if threading.get_ident() != self.thread:
            self.violations.append(f"the update {update!r} reached the engine on thread "
                                   f"{threading.current_thread().name}, not the event loop's")
        if not isinstance(update, TaskUpdate) or not isinstance(update.state, TaskState):
            self.violations.append(f"reported {update!r}, which is not a TaskUpdate")
            return
        if update.uid not in self._expected:
            self.violations.append(f"an update for {update.uid!r}, which was never submitted: "
                                   f"{update.state}")
        history = self.updates.setdefault(update.uid, [])
        earlier = next((u for u in history if u.state.is_terminal), None)
        if earlier is not None:
            self.violations.append(f"{update.uid}: {update.state} reported after the terminal "
                                   f"state {earlier.state}")
        elif update.state is TaskState.RUNNING and history:
            self.violations.append(f"{update.uid}: RUNNING reported twice")
        if update.state is TaskState.FAILED and not isinstance(update.error, BaseException):
            self.violations.append(f"{update.uid}: FAILED without an exception "
                                   f"(error={update.error!r})")
        history.append(update)
        if earlier is None:
            self._wake(update.uid, update.state.is_terminal, update)

    def _wake(self, uid: str, terminal: bool, update: TaskUpdate) -> None:
        keys = [(uid, False)] + ([(uid, True)] if terminal else [])
        for key in keys:
            for waiter in self._waiters.pop(key, []):
                if not waiter.done():
                    waiter.set_result(update)

    def states(self, uid: str) -> list[TaskState]:
        """The states reported for ``uid`` so far, in order (``[]`` before its first)."""
        return [u.state for u in self.updates.get(uid, [])]

    def terminal_of(self, uid: str) -> TaskUpdate | None:
        """The task's terminal update if it has arrived, else ``None``."""
        return next((u for u in self.updates.get(uid, []) if u.state.is_terminal), None)

    async def terminal(self, uid: str) -> TaskUpdate:
        """The task's terminal update, once it arrives."""
        found = self.terminal_of(uid)
        if found is not None:
            return found
        return await self._bounded(f"the terminal update of {uid}", self._future(uid, True))

    async def running(self, uid: str) -> TaskUpdate:
        """The task's first update (``RUNNING``, or its terminal one if it skipped
        ``RUNNING``), once it arrives."""
        if self.updates.get(uid):
            return self.updates[uid][0]
        return await self._bounded(f"RUNNING (the first update) of {uid}",
                                   self._future(uid, False))

    def _future(self, uid: str, terminal: bool) -> asyncio.Future[TaskUpdate]:
        # Made at once, not in a task started later, so no update can slip in between.
        waiter: asyncio.Future[TaskUpdate] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((uid, terminal), []).append(waiter)
        return waiter

    async def _bounded(self, what: str, awaitable: Awaitable[T]) -> T:
        self.waiting_for = what
        if self.timeout is None:
            return await awaitable
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except TimeoutError:
            raise TimeoutError(f"waited {self.timeout:g} s for {what}") from None

    async def all_terminal(self, specs: Iterable[TaskSpec]) -> dict[str, TaskUpdate]:
        """The terminal update of every spec, by uid, once the last one arrives."""
        uids = [spec.uid for spec in specs]
        missing = [uid for uid in uids if self.terminal_of(uid) is None]
        if missing:
            await self._bounded(f"terminal updates of {len(missing)} task(s), e.g. "
                                f"{', '.join(missing[:5])}",
                                asyncio.gather(*[self._future(uid, True) for uid in missing]))
        return {uid: self.terminal_of(uid) for uid in uids}  # type: ignore[misc]


@dataclass
class Gate:
    """A file whose creation releases every :func:`~asyncflow.testing._bodies.wait_for_gate`
    body waiting on it."""

    path: Path

    def open(self) -> None:
        self.path.touch()


_uids = itertools.count(1)


@dataclass
class Driver:
    """A started backend under test, with the recorder it reports to."""

    backend: ExecutionBackend
    recorder: Recorder
    tmp_path: Path
    gates: list[Gate] = field(default_factory=list)

    def spec(self, function: Callable[..., Any], *args: Any, timeout: float | None = None,
             **kwargs: Any) -> TaskSpec:
        """A function task calling ``function(*args, **kwargs)``."""
        return TaskSpec(uid=_uid(), name=function.__name__, kind=TaskKind.FUNCTION,
                        function=function, args=args, kwargs=kwargs, timeout=timeout,
                        is_coroutine=inspect.iscoroutinefunction(function))

    def command(self, command: tuple[str, ...] | str, **fields: Any) -> TaskSpec:
        """An executable task; ``fields`` are other :class:`TaskSpec` fields (env, cwd...)."""
        return TaskSpec(uid=_uid(), name="command", kind=TaskKind.EXECUTABLE, command=command,
                        shell=isinstance(command, str), **fields)

    def prompt(self, text: str, **fields: Any) -> TaskSpec:
        """A prompt task; ``fields`` are other :class:`TaskSpec` fields (description...)."""
        return TaskSpec(uid=_uid(), name="prompt", kind=TaskKind.PROMPT, prompt=text, **fields)

    def gate(self) -> Gate:
        gate = Gate(self.tmp_path / f"gate-{len(self.gates)}")
        self.gates.append(gate)
        return gate

    def open_gates(self) -> None:
        for gate in self.gates:
            gate.open()

    async def submit(self, *specs: TaskSpec) -> None:
        self.recorder.expect(spec.uid for spec in specs)
        self.recorder.waiting_for = f"backend.submit() of {len(specs)} task(s)"
        await self.backend.submit(list(specs))

    async def cancel(self, uid: str) -> bool:
        self.recorder.waiting_for = f"backend.cancel({uid!r})"
        return await self.backend.cancel(uid)

    async def close(self) -> None:
        self.recorder.waiting_for = "backend.close()"
        await self.backend.close()

    async def outcome(self, spec: TaskSpec) -> TaskUpdate:
        return await self.recorder.terminal(spec.uid)

    async def outcomes(self, specs: Iterable[TaskSpec]) -> dict[str, TaskUpdate]:
        return await self.recorder.all_terminal(specs)


def _uid() -> str:
    return f"conformance.{next(_uids):06d}"


def count_calls(backend: ExecutionBackend, *methods: str) -> dict[str, int]:
    """Count how often the backend's own async ``methods`` run (``start``, ``shutdown``)."""
    counts = dict.fromkeys(methods, 0)
    for name in methods:
        original = getattr(backend, name)

        async def counted(*args: Any, _original: Any = original, _name: str = name,
                          **kwargs: Any) -> Any:
            counts[_name] += 1
            return await _original(*args, **kwargs)

        setattr(backend, name, counted)
    return counts
