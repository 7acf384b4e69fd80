"""DaskExecutionBackend on a LocalCluster of worker processes: what runs where and when."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import warnings
import weakref
from collections.abc import AsyncIterator
from typing import Any

import dask
import dask_bodies as bodies
import psutil
import pytest
from dask_support import WITHIN, Inbox

from asyncflow import TaskKind, TaskSpec, TaskState, WorkflowEngine
from asyncflow.errors import BackendError, TaskTimeoutError
from asyncflow.testing import Recorder
from asyncflow_dask import DaskExecutionBackend

_uids = iter(range(1_000_000))


def spec(fn: Any, *args: Any, **fields: Any) -> TaskSpec:
    """A function task's spec, as the engine would build it."""
    return TaskSpec(f"test.{next(_uids):06d}", fn.__name__, TaskKind.FUNCTION, fn, args,
                    is_coroutine=asyncio.iscoroutinefunction(fn), **fields)


@pytest.fixture
def recorder() -> Recorder:
    """What the ``backend`` fixture reports, each update checked against the contract."""
    return Recorder(timeout=WITHIN)


@pytest.fixture
async def backend(cluster: Any, recorder: Recorder) -> AsyncIterator[DaskExecutionBackend]:
    """A started backend on the module's cluster, reporting to ``recorder``; once it is
    closed, no update it reported (shutdown's included) may have broken the contract."""
    connected = DaskExecutionBackend(address=cluster.scheduler_address)
    connected.attach(recorder)
    async with connected:
        yield connected
    assert recorder.violations == []


def test_loading_the_plugin_does_not_import_distributed() -> None:
    code = ("import sys, asyncflow; cls = asyncflow.registry().get('dask_distributed'); "
            "print(cls.__name__, 'distributed' in sys.modules, 'dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["DaskExecutionBackend", "False", "False"]


@pytest.mark.parametrize("options", [
    {"address": "tcp://127.0.0.1:8786", "cluster": object()},
    {"address": "tcp://127.0.0.1:8786", "n_workers": 2},
    {"client": object(), "cluster_options": {"resources": {"GPU": 1}}},
    {"n_workers": 2, "cluster_options": {"n_workers": 3}},
])
def test_contradicting_options_are_type_errors(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="DaskExecutionBackend"):
        DaskExecutionBackend(**options)


async def test_an_unreachable_scheduler_fails_the_start_clearly() -> None:
    backend = DaskExecutionBackend(address="tcp://127.0.0.1:9", connect_timeout=0.5)
    with pytest.raises(BackendError, match=r"cannot connect to the Dask scheduler at tcp://"):
        await backend.open()
    await backend.close()


async def test_running_is_reported_when_the_body_starts_not_at_submission(
        backend: DaskExecutionBackend, recorder: Recorder, inbox: Inbox) -> None:
    # The module's cluster has 2 workers x 2 threads: four bodies run, the fifth waits.
    specs = [spec(bodies.through_gate, inbox.address, f"gate{i}") for i in range(5)]
    recorder.expect(s.uid for s in specs)
    await backend.submit(specs)
    started = {(await inbox.next())[0] for _ in range(4)}
    by_label = {s.args[1]: s for s in specs}
    for label in started:
        assert (await recorder.running(by_label[label].uid)).state is TaskState.RUNNING
    (waiting,) = set(by_label) - started
    assert recorder.states(by_label[waiting].uid) == []  # submitted, not running yet
    inbox.open_gate()
    assert (await inbox.next())[0] == waiting
    for s in specs:
        done = await recorder.terminal(s.uid)
        assert (done.state, done.value) == (TaskState.DONE, s.args[1])
        assert recorder.states(s.uid) == [TaskState.RUNNING, TaskState.DONE]


async def test_a_large_result_reaches_its_dependent_worker_to_worker(cluster: Any) -> None:
    backend = DaskExecutionBackend(address=cluster.scheduler_address)
    async with await WorkflowEngine.create(backend=backend) as flow:
        make = flow.function_task(bodies.megabytes)
        size = flow.function_task(bodies.size)
        # Dask warns when a graph it sends to the scheduler is large: the check can fail,
        # as the value passed by hand shows.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = make(50)
            assert await size(data) == 50 * 2**20
            by_ref = [str(w.message) for w in caught]
            assert await size(await data) == 50 * 2**20
            by_value = [str(w.message) for w in caught[len(by_ref):]]
        assert not [m for m in by_ref if "large graph" in m], by_ref
        assert [m for m in by_value if "large graph" in m], by_value

        client = backend.client
        assert data._ref is not None
        upstream = data._ref[1].key
        dependent = size(data)
        await dependent
        assert dependent._ref is not None

        def dependencies(dask_scheduler: Any, key: str) -> list[str]:
            return [dep.key for dep in dask_scheduler.tasks[key].dependencies]

        # On the scheduler, the dependent task waited for the upstream key: its input came
        # from the worker holding it, not from the client.
        assert await client.run_on_scheduler(dependencies, key=dependent._ref[1].key) == [
            upstream]

        # Dropping the futures releases the data on the cluster: memory stays flat.
        watched = weakref.ref(data._ref[1])
        del data, dependent
        await asyncio.sleep(0)  # the loop's handle that woke this test still holds a future
        gc.collect()
        assert watched() is None
        await asyncio.sleep(0)  # Dask releases a dropped future's key on its next iteration
        assert upstream not in client.futures


async def test_a_body_is_sent_by_value_when_it_is_not_importable(
        backend: DaskExecutionBackend, recorder: Recorder) -> None:
    def local_body(x: int) -> int:  # defined here: Dask workers cannot import it
        return x * 7

    async def local_async(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    first, second = spec(local_body, 6), spec(local_async, 1)
    recorder.expect([first.uid, second.uid])
    await backend.submit([first, second])
    assert (await recorder.terminal(first.uid)).value == 42
    assert (await recorder.terminal(second.uid)).value == 2


async def test_one_unpicklable_argument_fails_only_its_task(
        backend: DaskExecutionBackend, recorder: Recorder) -> None:
    bad, good = spec(bodies.size, threading.Lock()), spec(bodies.size, b"abc")
    recorder.expect([bad.uid, good.uid])
    await backend.submit([bad, good])
    failed = await recorder.terminal(bad.uid)
    assert failed.state is TaskState.FAILED and isinstance(failed.error, BackendError)
    assert f"task 'size' ({bad.uid}) cannot be sent to Dask" in str(failed.error)
    assert (await recorder.terminal(good.uid)).value == 3


async def test_resources_are_dask_worker_resources() -> None:
    # One worker with one GPU and two threads: the GPU tasks take turns, the other does not
    # wait for them.
    backend = DaskExecutionBackend(n_workers=1, threads_per_worker=2, processes=False,
                                   cluster_options={"resources": {"GPU": 1}})
    recorder = Recorder(timeout=WITHIN)
    backend.attach(recorder)
    async with backend:
        gpu_a = spec(bodies.interval, 0.3, description={"gpus": 1})
        gpu_b = spec(bodies.interval, 0.3, description={"resources": {"GPU": 1}})
        cpu = spec(bodies.interval, 0.3)
        tpu = spec(bodies.interval, 0, description={"resources": {"TPU": 1}})
        nowhere = spec(bodies.interval, 0, description={"workers": "tcp://192.0.2.1:1"})
        recorder.expect(s.uid for s in (gpu_a, gpu_b, cpu, tpu, nowhere))
        await backend.submit([gpu_a, gpu_b, cpu, tpu, nowhere])
        (a0, a1), (b0, b1), (c0, c1) = [(await recorder.terminal(s.uid)).value
                                        for s in (gpu_a, gpu_b, cpu)]
        assert a1 <= b0 or b1 <= a0, "two tasks held the worker's one GPU at once"
        # The worker's second thread is free while a GPU task runs: the CPU task overlaps one.
        overlaps = [c0 < end and start < c1 for start, end in ((a0, a1), (b0, b1))]
        assert any(overlaps), "the task without a GPU waited for the GPU tasks"
        for unplaceable, why in ((tpu, "Dask resources {'TPU': 1}, but no worker offers "
                                       "them (workers offer: GPU=1)"),
                                 (nowhere, "none of the workers ['tcp://192.0.2.1:1']")):
            failed = await recorder.terminal(unplaceable.uid)
            assert failed.state is TaskState.FAILED and why in str(failed.error), failed
            assert f"({unplaceable.uid})" in str(failed.error)
    assert recorder.violations == []


async def test_cancelling_a_running_command_kills_it(backend: DaskExecutionBackend,
                                                     recorder: Recorder, inbox: Inbox,
                                                     bodies_dir: Any) -> None:
    code = (f"import sys; sys.path.insert(0, {str(bodies_dir)!r}); import dask_bodies; "
            f"dask_bodies.report_then_sleep({inbox.address!r}, 'command', 3600)")
    command = TaskSpec("test.command", "sleeper", TaskKind.EXECUTABLE,
                       command=(sys.executable, "-c", code))
    recorder.expect([command.uid])
    await backend.submit([command])
    _, pid = await inbox.next()
    process = psutil.Process(pid)  # now, while it surely exists
    assert (await recorder.running(command.uid)).state is TaskState.RUNNING
    assert await backend.cancel(command.uid) is True
    assert recorder.states(command.uid) == [TaskState.RUNNING, TaskState.CANCELLED]
    await asyncio.to_thread(process.wait, 60)  # returns once it is gone


async def test_cancelling_a_running_async_body_stops_it_on_the_worker(
        backend: DaskExecutionBackend, recorder: Recorder, inbox: Inbox) -> None:
    sleeper = spec(bodies.report_then_sleep_async, inbox.address, "async", 3600)
    recorder.expect([sleeper.uid])
    await backend.submit([sleeper])
    await inbox.next()
    assert (await recorder.running(sleeper.uid)).state is TaskState.RUNNING
    assert await backend.cancel(sleeper.uid) is True
    assert recorder.states(sleeper.uid) == [TaskState.RUNNING, TaskState.CANCELLED]

    def still_running() -> list[str]:
        from asyncflow_dask import _worker
        return list(_worker._stoppable)

    running = await backend.client.run(still_running)
    assert len(running) == 2 and not any(running.values()), running


async def test_a_plain_body_past_its_timeout_fails_with_task_timeout_error(
        backend: DaskExecutionBackend, recorder: Recorder) -> None:
    slow = spec(bodies.sleep, 3, timeout=0.5)
    recorder.expect([slow.uid])
    await backend.submit([slow])
    failed = await recorder.terminal(slow.uid)
    assert isinstance(failed.error, TaskTimeoutError)
    assert "exceeded its timeout of 0.5 s; its body keeps running" in str(failed.error)
    assert recorder.states(slow.uid) == [TaskState.RUNNING, TaskState.FAILED]


async def test_two_backends_can_share_one_client(cluster: Any) -> None:
    from distributed import Client

    async with Client(cluster.scheduler_address, asynchronous=True,
                      set_as_default=False) as client:
        first, second = (DaskExecutionBackend(client=client) for _ in range(2))
        recorders = {first: Recorder(timeout=WITHIN), second: Recorder(timeout=WITHIN)}
        for backend, recorder in recorders.items():
            backend.attach(recorder)
            await backend.open()
        specs = {b: spec(bodies.size, b"four") for b in (first, second)}
        for backend, task in specs.items():
            recorders[backend].expect([task.uid])
            await backend.submit([task])
        for backend, task in specs.items():
            assert (await recorders[backend].terminal(task.uid)).value == 4
            assert recorders[backend].states(task.uid) == [TaskState.RUNNING, TaskState.DONE]
        await first.close()
        # The second backend still hears about its tasks starting; the client stays open.
        late = spec(bodies.size, b"late")
        recorders[second].expect([late.uid])
        await second.submit([late])
        assert (await recorders[second].terminal(late.uid)).value == 4
        assert recorders[second].states(late.uid) == [TaskState.RUNNING, TaskState.DONE]
        await second.close()
        assert [r.violations for r in recorders.values()] == [[], []]
        assert client.status == "running"  # a given client is used as given, never closed
        assert await client.submit(bodies.size, b"ok", pure=False) == 2


async def test_a_given_cluster_is_used_and_left_running(cluster: Any) -> None:
    backend = DaskExecutionBackend(cluster=cluster)
    async with await WorkflowEngine.create(backend=backend) as flow:
        assert await flow.function_task(bodies.size)(b"abcd") == 4
        assert backend.client.scheduler.address == cluster.scheduler_address
    assert backend.closed and cluster.status.name == "running"
    from distributed import Client

    async with Client(cluster.scheduler_address, asynchronous=True,
                      set_as_default=False) as client:
        assert len((await client.scheduler.identity())["workers"]) == 2
