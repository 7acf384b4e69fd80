"""Telemetry through the public API, recorded by the OpenTelemetry SDK's in-memory exporter and
reader (the real SDK: spans and metrics as any exporter would receive them)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import radical.asyncflow as rflow
from asyncflow_otel import Telemetry, TelemetryEvent
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from asyncflow import DependencyFailureError, WorkflowEngine

pytestmark = pytest.mark.timeout(60)


class Recorded:
    """An engine with telemetry into the in-memory exporter and reader."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()

    async def start(self, flow: WorkflowEngine, **options: Any) -> Telemetry:
        telemetry = await flow.start_telemetry(span_processors=[SimpleSpanProcessor(self.spans)],
                                               metric_readers=[self.metrics], **options)
        assert isinstance(telemetry, Telemetry)
        return telemetry

    def finished(self) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.spans.get_finished_spans()}

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [point for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == metric for point in m.data.data_points]


@pytest.fixture
async def flow(tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    engine = await WorkflowEngine.create("concurrent", work_dir=tmp_path)
    yield engine
    await engine.shutdown()


async def test_spans_nest_session_block_task_with_events_and_attributes(
        flow: WorkflowEngine) -> None:
    recorded = Recorded()
    await recorded.start(flow)

    @flow.function_task
    async def add(a: int, b: int) -> int:
        return a + b

    @flow.block
    async def pipeline(n: int) -> int:
        return await add(add(n, 1), 2)

    assert await pipeline(1) == 4
    await flow.shutdown()
    spans = recorded.spans.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (session,) = by_name["asyncflow session"]
    (block,) = by_name["block pipeline"]
    first, second = sorted(by_name["function add"], key=lambda s: s.start_time or 0)
    assert session.parent is None
    assert block.parent is not None and block.parent.span_id == session.context.span_id
    for task in (first, second):
        assert task.parent is not None and task.parent.span_id == block.context.span_id
        assert task.context.trace_id == session.context.trace_id
        assert task.attributes is not None
        assert task.attributes["asyncflow.backend"] == "concurrent"
        assert task.attributes["asyncflow.outcome"] == "DONE"
        assert task.attributes["asyncflow.attempt"] == 1
        assert task.attributes["asyncflow.block"] == block.attributes["asyncflow.task.uid"]  # type: ignore[index]
        assert task.events[0].name == "queued"
        assert task.events[-1].name == "finished"
    assert second.attributes["asyncflow.depends_on"] == (  # type: ignore[index]
        first.attributes["asyncflow.task.uid"],)  # type: ignore[index]
    assert block.attributes["asyncflow.backend"] == "engine"  # type: ignore[index]


async def test_failures_carry_error_type_and_status(flow: WorkflowEngine) -> None:
    recorded = Recorded()
    telemetry = await recorded.start(flow)

    @flow.function_task
    def broken() -> None:
        raise KeyError("missing")

    @flow.function_task
    def after(value: object) -> object:
        return value

    failing = broken()
    dependent = after(failing)
    with pytest.raises(KeyError):
        await failing
    with pytest.raises(DependencyFailureError):
        await dependent
    spans = recorded.finished()
    failed = spans["function broken"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "KeyError"  # type: ignore[index]
    assert failed.attributes["asyncflow.outcome"] == "FAILED"  # type: ignore[index]
    # Tasks failed by a dependency end too (upstream's telemetry leaves them open).
    assert spans["function after"].attributes["error.type"] == (  # type: ignore[index]
        "asyncflow.errors.DependencyFailureError")
    summary = telemetry.summary()
    assert summary["tasks"]["FAILED"] == 2
    assert summary["errors"] == {"KeyError": 1, "asyncflow.errors.DependencyFailureError": 1}


async def test_counters_of_tasks_by_state_and_durations(flow: WorkflowEngine) -> None:
    recorded = Recorded()
    await recorded.start(flow)

    @flow.function_task
    async def square(x: int) -> int:
        return x * x

    assert await asyncio.gather(*(square(i) for i in range(10))) == [i * i for i in range(10)]
    counts = {(p.attributes["asyncflow.state"], p.attributes["asyncflow.task.kind"]): p.value
              for p in recorded.points("asyncflow.tasks")}
    assert counts[("PENDING", "function")] == 10
    assert counts[("DONE", "function")] == 10
    (durations,) = recorded.points("asyncflow.task.duration")
    assert durations.count == 10 and durations.attributes["asyncflow.outcome"] == "DONE"
    (rss,) = recorded.points("asyncflow.process.max_rss")
    assert rss.value > 0


async def test_retries_show_as_events_and_attempts(flow: WorkflowEngine) -> None:
    recorded = Recorded()
    await recorded.start(flow)
    calls = []

    @flow.function_task(retries=2)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("again")
        return "ok"

    assert await flaky() == "ok"
    span = recorded.finished()["function flaky"]
    assert span.attributes["asyncflow.attempt"] == 3  # type: ignore[index]
    retries = [e for e in span.events if e.name == "retry"]
    assert [e.attributes["error.type"] for e in retries] == [  # type: ignore[index]
        "ConnectionError", "ConnectionError"]


async def test_subscribe_and_summary(flow: WorkflowEngine) -> None:
    recorded = Recorded()
    telemetry = await recorded.start(flow)
    events: list[TelemetryEvent] = []
    unsubscribe = telemetry.subscribe(events.append)

    @flow.executable_task
    def hello() -> str:
        return "echo hello"

    assert await hello() == "hello\n"
    names = [e.name for e in events]
    assert names[0] == "TaskCreated" and names[-1] == "TaskCompleted"
    assert events[-1].attributes["backend"] == "concurrent"
    assert events[-1].session_id == flow.uid
    unsubscribe()
    await hello()
    assert len(events) == len(names)
    summary = telemetry.summary()
    assert summary["tasks"]["DONE"] == 2 and summary["outcomes"] == {"concurrent/DONE": 2}
    assert summary["duration_s"]["count"] == 2


async def test_a_broken_subscriber_is_dropped_not_the_workflow(
        flow: WorkflowEngine, caplog: pytest.LogCaptureFixture) -> None:
    telemetry = await Recorded().start(flow)

    def broken(event: TelemetryEvent) -> None:
        raise RuntimeError("subscriber bug")

    telemetry.subscribe(broken)

    @flow.function_task
    async def one() -> int:
        return 1

    assert await one() == 1
    assert await one() == 1
    assert caplog.text.count("it is unsubscribed") == 1


async def test_workflow_scope_spans_group_tasks_by_workflow_id(flow: WorkflowEngine) -> None:
    recorded = Recorded()
    await recorded.start(flow)
    scope = getattr(flow, "workflow_scope", None)
    if scope is None:
        pytest.skip("workflow_scope() is not on this branch (it comes with workflow scopes)")

    @flow.function_task
    async def step(i: int) -> int:
        return i

    async with scope("ingest"):
        await asyncio.gather(step(1), step(2))
    await flow.shutdown()
    spans = recorded.finished()
    workflow = spans["workflow ingest"]
    tasks = [s for s in recorded.spans.get_finished_spans() if s.name == "function step"]
    assert all(t.parent is not None and t.parent.span_id == workflow.context.span_id
               for t in tasks)


async def test_telemetry_stops_with_the_engine(tmp_path: Path) -> None:
    recorded = Recorded()
    checkpoint = tmp_path / "telemetry.jsonl"
    async with WorkflowEngine.create("concurrent", work_dir=tmp_path) as flow:
        telemetry = await recorded.start(flow, checkpoint_path=checkpoint)
        assert await flow.start_telemetry() is telemetry  # one per engine

        @flow.function_task
        async def one() -> int:
            return 1

        await one()
    assert not telemetry.summary()["running"]
    assert "asyncflow session" in recorded.finished()
    (line,) = checkpoint.read_text().splitlines()
    assert json.loads(line)["tasks"]["DONE"] == 1
    with pytest.raises(RuntimeError, match="is shut down"):
        await flow.start_telemetry()


async def test_upstream_spelling_on_the_alias(tmp_path: Path) -> None:
    recorded = Recorded()
    backend = await rflow.ConcurrentExecutionBackend()
    flow = await rflow.WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        telemetry = await flow.start_telemetry(
            resource_poll_interval=1.0, span_processors=[SimpleSpanProcessor(recorded.spans)],
            metric_readers=[recorded.metrics])

        @flow.function_task
        async def task1() -> str:
            return "done"

        assert await task1() == "done"
        assert telemetry.summary()["tasks"]["DONE"] == 1
        assert callable(telemetry.subscribe)
    finally:
        await flow.shutdown()
    assert "function task1" in recorded.finished()


def _run(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60, check=True)
    return result.stdout.strip()


# The global-provider and off-switch cases need a fresh interpreter: OpenTelemetry's global
# providers can be set once per process, and the switch is read when the plugin loads.
GLOBAL_SDK = """
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from asyncflow import WorkflowEngine

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

async def main():
    async with WorkflowEngine.create("concurrent") as flow:
        @flow.function_task
        async def traced():
            return 1
        await traced()

asyncio.run(main())
print(sorted(span.name for span in exporter.get_finished_spans()))
"""


def test_an_application_configured_sdk_gets_spans_without_start_telemetry() -> None:
    assert _run(GLOBAL_SDK) == "['asyncflow session', 'function traced']"


def test_the_off_switch_records_nothing() -> None:
    assert _run(GLOBAL_SDK, ASYNCFLOW_TELEMETRY="off") == "[]"
    refused = _run("""
import asyncio
from asyncflow import WorkflowEngine

async def main():
    async with WorkflowEngine.create("concurrent") as flow:
        try:
            await flow.start_telemetry()
        except RuntimeError as exc:
            print(exc)

asyncio.run(main())
""", ASYNCFLOW_TELEMETRY="0")
    assert refused.startswith("telemetry is turned off for engine asyncflow.session.")
    # The variable is the telemetry key's environment source, named as every source is.
    assert refused.endswith(": telemetry = false, from environment variable ASYNCFLOW_TELEMETRY")


def test_the_telemetry_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "telemetry.py"
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("block campaign       DONE") == 2
    assert done.stdout.splitlines()[-1] == '{"PENDING": 11, "RUNNING": 11, "DONE": 11}'
