"""Retries: at most once by default; N more attempts with backoff and jitter when asked; only
for the errors named; the attempt visible to the body, the backend and observers.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator

import pytest
from loop_backend import LoopBackend

import asyncflow
from asyncflow import RetryPolicy, TaskRecord, TaskState, WorkflowEngine, current_attempt
from asyncflow.retries import with_attempt


class Flaky:
    """A body that fails with ``error`` on its first ``failures`` calls, then returns."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[int] = []  # current_attempt() as each call saw it
        self.times: list[float] = []

    def __call__(self, value: int) -> int:
        self.attempts.append(current_attempt())
        self.times.append(asyncio.get_running_loop().time())
        if len(self.attempts) <= self.failures:
            raise self.error(f"failure {len(self.attempts)}")
        return value * 10


class RetryWatcher:
    """An observer plugin that sets an event when a task goes back to PENDING for a retry."""

    def __init__(self) -> None:
        self.retried = asyncio.Event()
        self.retries: list[tuple[str, int, str]] = []  # uid, new attempt, last error type

    @asyncflow.hookimpl
    def asyncflow_task_state_changed(self, task: TaskRecord, old: TaskState,
                                     new: TaskState) -> None:
        if old is TaskState.RUNNING and new is TaskState.PENDING:
            self.retries.append((task.uid, task.attempt, type(task.error).__name__))
            self.retried.set()


@pytest.fixture
def watcher() -> Iterator[RetryWatcher]:
    plugin = RetryWatcher()
    asyncflow.register(plugin)
    yield plugin
    asyncflow.plugin_manager().unregister(plugin)


async def test_a_failing_task_runs_once_by_default(flow: WorkflowEngine,
                                                   backend: LoopBackend) -> None:
    body = Flaky(failures=1)

    async def once(value: int) -> int:
        return body(value)

    task = flow.function_task(once)
    with pytest.raises(ConnectionError, match="failure 1"):
        await task(1)
    assert body.attempts == [1]
    assert [spec.attempt for spec in backend.specs] == [1]


async def test_retries_run_again_until_success_and_show_the_attempt(
        watcher: RetryWatcher, flow: WorkflowEngine, backend: LoopBackend) -> None:
    body = Flaky(failures=2)

    @flow.function_task(retries=2)
    async def flaky(value: int) -> int:
        return body(value)

    assert await flaky(4) == 40
    assert body.attempts == [1, 2, 3]
    assert [spec.attempt for spec in backend.specs] == [1, 2, 3]
    uid = backend.specs[0].uid
    assert watcher.retries == [(uid, 2, "ConnectionError"), (uid, 3, "ConnectionError")]


async def test_a_plain_def_body_in_a_thread_sees_its_attempt(flow: WorkflowEngine) -> None:
    def in_thread(value: int) -> tuple[int, int]:
        attempt = current_attempt()
        if attempt == 1:
            raise ConnectionError("first")
        return value, attempt

    assert await flow.function_task(retries=1)(in_thread)(7) == (7, 2)


async def test_retries_exhausted_fail_with_the_last_error(flow: WorkflowEngine) -> None:
    body = Flaky(failures=5)

    @flow.function_task(retries=2)
    async def flaky(value: int) -> int:
        return body(value)

    with pytest.raises(ConnectionError, match="failure 3"):
        await flaky(1)
    assert body.attempts == [1, 2, 3]


async def test_backoff_waits_exponentially_longer_between_attempts(flow: WorkflowEngine) -> None:
    body = Flaky(failures=3)

    @flow.function_task(retries=3, retry_backoff=0.05, retry_jitter=0)
    async def flaky(value: int) -> int:
        return body(value)

    assert await flaky(1) == 10
    gaps = [b - a for a, b in zip(body.times, body.times[1:], strict=False)]
    resolution = asyncio.get_running_loop()._clock_resolution  # type: ignore[attr-defined]
    for gap, wanted in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert gap >= wanted - resolution, (gaps, wanted)


async def test_retry_on_names_the_errors_worth_a_retry(flow: WorkflowEngine) -> None:
    transient, permanent = Flaky(failures=1), Flaky(failures=1, error=KeyError)
    policy = {"retries": 3, "retry_on": (ConnectionError, TimeoutError)}

    @flow.function_task(**policy)
    async def first(value: int) -> int:
        return transient(value)

    @flow.function_task(**policy)
    async def second(value: int) -> int:
        return permanent(value)

    assert await first(1) == 10
    with pytest.raises(KeyError):
        await second(1)
    assert transient.attempts == [1, 2]
    assert permanent.attempts == [1]


async def test_retry_on_accepts_a_predicate(flow: WorkflowEngine) -> None:
    body = Flaky(failures=5)

    def only_the_first(error: BaseException) -> bool:
        return str(error) == "failure 1"

    @flow.function_task(retries=5, retry_on=only_the_first)
    async def flaky(value: int) -> int:
        return body(value)

    with pytest.raises(ConnectionError, match="failure 2"):
        await flaky(1)
    assert body.attempts == [1, 2]


async def test_a_broken_predicate_fails_the_task_not_the_engine(
        flow: WorkflowEngine, caplog: pytest.LogCaptureFixture) -> None:
    def broken(error: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    @flow.function_task(retries=2, retry_on=broken)
    async def fails() -> None:
        raise ConnectionError("the task's own error")

    @flow.function_task
    async def fine() -> str:
        return "still running"

    with pytest.raises(ConnectionError, match="the task's own error"):
        await fails()
    assert await fine() == "still running"
    assert "retry_on of task fails" in caplog.text


async def test_cancelling_a_task_in_backoff_stops_its_timer(
        watcher: RetryWatcher, flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.function_task(retries=1, retry_backoff=3600)
    async def fails() -> None:
        raise ConnectionError("down")

    future = fails()
    await asyncio.wait_for(watcher.retried.wait(), 10)
    timer = flow._retry_timers[future.uid]
    assert future.state is TaskState.PENDING
    future.cancel()
    assert timer.cancelled()
    assert not flow._retry_timers
    with pytest.raises(asyncio.CancelledError):
        await future
    assert len(backend.specs) == 1  # never submitted again


async def test_shutdown_during_backoff_leaves_no_timer_and_no_pending_future(
        backend: LoopBackend, watcher: RetryWatcher) -> None:
    flow = await WorkflowEngine.create(backend=backend)

    @flow.function_task(retries=1, retry_backoff=3600)
    async def fails() -> None:
        raise ConnectionError("down")

    future = fails()
    await asyncio.wait_for(watcher.retried.wait(), 10)
    timer = flow._retry_timers[future.uid]
    await flow.shutdown()
    assert timer.cancelled()
    assert future.cancelled()
    assert len(backend.specs) == 1


def test_policy_delays_grow_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=10, backoff=1.0, factor=3.0, max_delay=20.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 20.0, 20.0]
    assert RetryPolicy(retries=2).delay(1) == 0.0  # no backoff: retry at once


def test_policy_jitter_spreads_delays_within_its_bounds() -> None:
    policy = RetryPolicy(retries=1, backoff=2.0, jitter=0.25)
    delays = {policy.delay(1) for _ in range(200)}
    assert all(1.5 <= d <= 2.5 for d in delays)
    assert len(delays) > 100  # actually random, not one fixed value


def test_policy_counts_attempts() -> None:
    policy = RetryPolicy(retries=2, retry_on=ValueError)
    assert policy.retry_on == (ValueError,)
    assert policy.should_retry(1, ValueError()) and policy.should_retry(2, ValueError())
    assert not policy.should_retry(3, ValueError())
    assert not policy.should_retry(1, KeyError())


async def test_a_retry_policy_object_is_shared_between_tasks(flow: WorkflowEngine) -> None:
    policy = RetryPolicy(retries=1, retry_on=(ConnectionError,))
    bodies = [Flaky(failures=1), Flaky(failures=1)]

    @flow.function_task(retries=policy)
    async def one(value: int) -> int:
        return bodies[0](value)

    @flow.function_task(retries=policy)
    async def two(value: int) -> int:
        return bodies[1](value)

    assert await asyncio.gather(one(1), two(2)) == [10, 20]
    assert [b.attempts for b in bodies] == [[1, 2], [1, 2]]


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"retries": -1}, ValueError, "retries= must be a whole number"),
    ({"retries": 1.5}, ValueError, "retries= must be a whole number"),
    ({"retries": 1, "retry_jitter": 2}, ValueError, "retry_jitter= must be between 0 and 1"),
    ({"retries": 1, "retry_backoff": -1}, ValueError, "backoff= must be a number of seconds"),
    ({"retries": 1, "retry_on": "OSError"}, TypeError, "retry_on= must be exception types"),
    ({"retries": RetryPolicy(1), "retry_backoff": 1}, TypeError, "set \\['backoff'\\] on it"),
])
async def test_bad_retry_options_are_refused_at_decoration(
        flow: WorkflowEngine, options: dict[str, object], error: type[Exception],
        match: str) -> None:
    async def body() -> None: ...

    with pytest.raises(error, match=match):
        flow.function_task(**options)(body)


def _attempt_seen(offset: int) -> int:
    return current_attempt() + offset


def test_the_attempt_travels_with_a_pickled_body() -> None:
    call = pickle.loads(pickle.dumps(with_attempt(_attempt_seen, 3, is_coroutine=False)))
    assert call(100) == 103
    assert current_attempt() == 1  # reset after the call
