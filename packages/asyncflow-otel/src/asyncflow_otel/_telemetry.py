"""One engine's telemetry: its observer hooks turned into spans, metrics and events.

Spans nest as the workflow does: the engine's session span holds a span per workflow scope
(``task.workflow_id``), which holds the spans of its blocks, which hold the spans of their
tasks. A task's span opens when the task is called and ends when it finishes, with the events
``queued``, ``started`` (each attempt), ``retry`` and ``finished``, and the attributes
backend, attempt, outcome and ``error.type``. A workflow span ends with the engine (at the end
of its last task): scopes have no hook of their own, and a scope may outlive any one task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from asyncflow import TaskState

try:
    import resource
except ImportError:  # not on Windows: no process gauges there
    resource = None  # type: ignore[assignment]
from asyncflow_otel.__about__ import __version__
from asyncflow_otel._providers import own_providers

if TYPE_CHECKING:
    from asyncflow import TaskFuture, TaskRecord, WorkflowEngine

__all__ = ["Telemetry", "TelemetryEvent"]

log = logging.getLogger("asyncflow.otel")

SCOPE = "asyncflow"  # the instrumentation scope of every tracer and meter

# A task's terminal state -> the event name RADICAL AsyncFlow's telemetry uses for it.
_END_EVENTS = {TaskState.DONE: "TaskCompleted", TaskState.FAILED: "TaskFailed",
               TaskState.CANCELLED: "TaskCanceled"}


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """What a subscriber receives: one thing that happened to a task (or the engine)."""

    name: str
    """``TaskCreated``, ``TaskStarted``, ``TaskRetried``, ``TaskCompleted``, ``TaskFailed``,
    ``TaskCanceled``, ``ServiceExited``, ``EngineStopped``."""
    time: float
    """Seconds since the epoch."""
    session_id: str
    uid: str | None = None
    task_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class Telemetry:
    """Spans and metrics of one engine, and events for subscribers; what
    ``await flow.start_telemetry()`` returns.

    Built by the plugin when the engine starts (from ``telemetry`` in the configuration, or
    with the global providers if the application configured OpenTelemetry) or by
    :meth:`WorkflowEngine.start_telemetry` with providers of its own. It stops with its
    engine: the last spans end and the providers it built are flushed (shut down, when the
    configuration built them).
    """

    def __init__(self, engine: WorkflowEngine, tracer_provider: TracerProvider,
                 meter_provider: MeterProvider, *, owned: bool = False,
                 checkpoint_path: str | Path | None = None, close: bool = False) -> None:
        self.session_id = engine.uid
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._owned = owned  # providers start_telemetry built: flushed when the engine stops
        # ... and shut down then, when the configuration built them with their exporters:
        # nothing else holds them, and their export threads must not outlive the engine.
        self._close = close
        self._checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
        self._tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter = meter_provider.get_meter(SCOPE, __version__)
        # Counted in a plain Counter and read by the metric reader when it collects: an SDK
        # counter's add() per state change would cost more than the engine spends on a task.
        self._entered: Counter[tuple[str, str]] = Counter()  # (state, kind) -> how many
        meter.create_observable_counter(
            "asyncflow.tasks", callbacks=[self._observe_entered], unit="{task}",
            description="Tasks and blocks entering each state (PENDING when called)")
        self._duration = meter.create_histogram(
            "asyncflow.task.duration", unit="s",
            description="From a task's call to its end, by outcome")
        if resource is not None:
            meter.create_observable_gauge(
                "asyncflow.process.cpu_time", callbacks=[_cpu_time], unit="s",
                description="CPU time of the engine's process, read when metrics are collected")
            meter.create_observable_gauge(
                "asyncflow.process.max_rss", callbacks=[_max_rss], unit="By",
                description="Peak resident memory of the engine's process")
        self._session = self._tracer.start_span(
            "asyncflow session", attributes={"asyncflow.session_id": engine.uid,
                                             "asyncflow.backends": list(engine.backends)})
        self._spans: dict[str, Span] = {}  # open task and block spans by uid
        self._called: dict[str, float] = {}  # monotonic time of each open task's call
        self._workflows: dict[str, list[Any]] = {}  # workflow id -> [span, end time in ns]
        self._subscribers: list[Callable[[TelemetryEvent], None]] = []
        self._outcomes: Counter[tuple[str, str]] = Counter()  # (backend, outcome)
        self._errors: Counter[str] = Counter()
        self._services_exited = 0
        self._durations: list[float] = []
        self._started = time.time()
        self._stopped: float | None = None
        self._timer: asyncio.TimerHandle | None = None  # the next periodic checkpoint

    # -- what users call -------------------------------------------------------------------

    def subscribe(self, callback: Callable[[TelemetryEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every :class:`TelemetryEvent`, on the event loop;
        returns the function that unsubscribes it. A callback that raises is logged and
        dropped."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in \
            self._subscribers else None

    def summary(self) -> dict[str, Any]:
        """Counts so far: tasks by state entered, outcomes by backend, error types, durations."""
        durations = self._durations
        return {
            "session_id": self.session_id,
            "running": self._stopped is None,
            "wall_time_s": (self._stopped or time.time()) - self._started,
            "tasks": self._by_state(),
            "outcomes": {f"{backend}/{outcome}": n
                         for (backend, outcome), n in sorted(self._outcomes.items())},
            "errors": dict(self._errors),
            "services_exited": self._services_exited,
            "duration_s": {"count": len(durations), "total": sum(durations),
                           "mean": sum(durations) / len(durations) if durations else 0.0,
                           "max": max(durations, default=0.0)},
        }

    def _by_state(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (state, _), n in self._entered.items():
            counts[state] += n
        return dict(counts)

    def checkpoint(self, path: str | Path | None = None) -> Path:
        """Append :meth:`summary` as one JSON line to ``path`` (the ``checkpoint_path``)."""
        target = Path(path) if path is not None else self._checkpoint
        if target is None:
            raise ValueError("checkpoint(): no path given and start_telemetry() had no "
                             "checkpoint_path")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a") as out:
            out.write(json.dumps(self.summary()) + "\n")
        return target

    def checkpoint_every(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        """Write a checkpoint every ``interval`` seconds until the engine stops (a timer)."""
        def tick() -> None:
            try:
                self.checkpoint()
            except OSError:
                log.exception("telemetry of %s: cannot write the checkpoint %s",
                              self.session_id, self._checkpoint)
            self._timer = loop.call_later(interval, tick)

        self._timer = loop.call_later(interval, tick)

    def shutdown(self) -> None:
        """Shut down the providers ``start_telemetry()`` built (exporters flush and close)."""
        if self._owned:
            for provider in (self.tracer_provider, self.meter_provider):
                stop = getattr(provider, "shutdown", None)
                if stop is not None:
                    stop()

    # -- what the hooks call ---------------------------------------------------------------

    def task_created(self, task: TaskRecord, dependencies: Sequence[TaskFuture[Any]]) -> None:
        attributes: dict[str, Any] = {"asyncflow.task.uid": task.uid,
                                      "asyncflow.task.name": task.name,
                                      "asyncflow.task.kind": task.kind}
        workflow = task.workflow_id
        if workflow is not None:
            attributes["asyncflow.workflow_id"] = workflow
        if task.block is not None:
            attributes["asyncflow.block"] = task.block
        if dependencies:
            attributes["asyncflow.depends_on"] = list(dict.fromkeys(d.uid for d in dependencies))
        span = self._tracer.start_span(f"{task.kind} {task.name}",
                                       context=trace.set_span_in_context(self._parent(task)),
                                       attributes=attributes)
        span.add_event("queued")
        self._spans[task.uid] = span
        self._called[task.uid] = time.monotonic()
        self._count(task, TaskState.PENDING)
        if self._subscribers:
            self._emit("TaskCreated", task, {"kind": task.kind, "depends_on": attributes.get(
                "asyncflow.depends_on", [])})

    def task_changed(self, task: TaskRecord, old: TaskState, new: TaskState) -> None:
        span = self._spans.get(task.uid)
        if span is None:  # created before this telemetry started
            return
        self._count(task, new)
        if new is TaskState.RUNNING:
            span.add_event("started", {"asyncflow.attempt": task.attempt})
            if self._subscribers:
                self._emit("TaskStarted", task, {"attempt": task.attempt})
        elif new is TaskState.PENDING:  # a failed attempt, retried
            error = task.error
            span.add_event("retry", {"asyncflow.attempt": task.attempt,
                                     "error.type": _error_type(error)})
            if self._subscribers:
                self._emit("TaskRetried", task, {"attempt": task.attempt,
                                                 "error_type": _error_type(error)})
        elif new.is_terminal:
            self._end(task, span, new)

    def _end(self, task: TaskRecord, span: Span, state: TaskState) -> None:
        del self._spans[task.uid]
        duration = time.monotonic() - self._called.pop(task.uid)
        backend = task.backend or ("engine" if task.kind == "block" else "none")
        span.set_attributes({"asyncflow.backend": backend, "asyncflow.attempt": task.attempt,
                             "asyncflow.outcome": state.value})
        attributes = {"asyncflow.outcome": state.value, "asyncflow.backend": backend}
        error_type = None
        if state is TaskState.FAILED:
            error = task.error
            error_type = _error_type(error)
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {error}"))
            attributes["error.type"] = error_type
            self._errors[error_type] += 1
        span.add_event("finished", {"asyncflow.outcome": state.value})
        span.end()
        if task.workflow_id is not None:
            ended = self._workflows.get(task.workflow_id)
            if ended is not None:
                ended[1] = time.time_ns()
        self._duration.record(duration, attributes)
        self._durations.append(duration)
        self._outcomes[(backend, state.value)] += 1
        if self._subscribers:
            extra: dict[str, Any] = {"duration": duration, "backend": backend,
                                     "attempt": task.attempt}
            if error_type is not None:
                extra["error_type"] = error_type
            self._emit(_END_EVENTS[state], task, extra)

    def service_exited(self, service: TaskFuture[Any], error: BaseException | None) -> None:
        error_type = _error_type(error)
        self._session.add_event("service exited", {"asyncflow.task.uid": service.uid,
                                                   "asyncflow.task.name": service.name,
                                                   "error.type": error_type})
        self._errors[error_type] += 1
        self._services_exited += 1
        if self._subscribers:
            self._broadcast(TelemetryEvent("ServiceExited", time.time(), self.session_id,
                                           service.uid, service.name,
                                           {"error_type": error_type, "error": str(error)}))

    def stopped(self, error: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        now = time.time_ns()
        for uid, span in list(self._spans.items()):  # tasks the engine never settled
            span.set_attribute("asyncflow.outcome", "UNFINISHED")
            span.end(end_time=now)
            del self._spans[uid]
        for span, end in self._workflows.values():
            span.end(end_time=end or now)
        self._workflows.clear()
        if error is not None:
            self._session.set_status(Status(StatusCode.ERROR, repr(error)))
            self._session.set_attribute("error.type", _error_type(error))
        self._session.end(end_time=now)
        self._stopped = time.time()
        if self._subscribers:
            self._broadcast(TelemetryEvent("EngineStopped", self._stopped, self.session_id,
                                           attributes={"error": repr(error) if error else None}))
        if self._checkpoint is not None:
            try:
                self.checkpoint()
            except OSError:
                log.exception("telemetry of %s: cannot write the checkpoint %s",
                              self.session_id, self._checkpoint)
        if self._close:
            self.shutdown()
        elif self._owned:
            for provider in (self.tracer_provider, self.meter_provider):
                flush = getattr(provider, "force_flush", None)
                if flush is not None:
                    flush()

    # -- helpers ---------------------------------------------------------------------------

    def _parent(self, task: TaskRecord) -> Span:
        if task.block is not None:
            block = self._spans.get(task.block)
            if block is not None:
                return block
        workflow = task.workflow_id
        if workflow is None:
            return self._session
        entry = self._workflows.get(workflow)
        if entry is None:
            span = self._tracer.start_span(
                f"workflow {workflow}", context=trace.set_span_in_context(self._session),
                attributes={"asyncflow.workflow_id": workflow})
            entry = self._workflows[workflow] = [span, 0]
        span = entry[0]
        assert isinstance(span, Span)
        return span

    def _count(self, task: TaskRecord, state: TaskState) -> None:
        self._entered[state.value, task.kind] += 1

    def _observe_entered(self, options: CallbackOptions) -> Iterable[Observation]:
        for (state, kind), n in list(self._entered.items()):
            yield Observation(n, {"asyncflow.state": state, "asyncflow.task.kind": kind})

    def _emit(self, name: str, task: TaskRecord, attributes: dict[str, Any]) -> None:
        if task.workflow_id is not None:
            attributes["workflow_id"] = task.workflow_id
        self._broadcast(TelemetryEvent(name, time.time(), self.session_id, task.uid, task.name,
                                       attributes))

    def _broadcast(self, event: TelemetryEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("telemetry subscriber %r failed on %s; it is unsubscribed",
                              callback, event.name)
                self._subscribers.remove(callback)


def attach(engine: WorkflowEngine, span_processors: Sequence[Any] | None,
           metric_readers: Sequence[Any] | None, resource: Any | None = None, *,
           checkpoint_path: str | Path | None = None, checkpoint_interval: float | None = None,
           close: bool = False) -> Telemetry:
    """A :class:`Telemetry` of ``engine``, into providers of its own when processors or
    readers are given (shut down when the engine stops if ``close``), else the global ones.
    """
    if checkpoint_interval is not None and checkpoint_path is None:
        raise ValueError("start_telemetry(): checkpoint_interval needs a checkpoint_path")
    owned = bool(span_processors or metric_readers)
    if owned:
        providers = own_providers(engine.uid, span_processors, metric_readers, resource)
    else:
        providers = trace.get_tracer_provider(), metrics.get_meter_provider()
    telemetry = Telemetry(engine, *providers, owned=owned, checkpoint_path=checkpoint_path,
                          close=close and owned)
    if checkpoint_interval is not None:
        telemetry.checkpoint_every(engine.loop, checkpoint_interval)
    return telemetry


def _error_type(error: BaseException | None) -> str:
    if error is None:
        return "unknown"
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"


def _cpu_time(options: CallbackOptions) -> Iterable[Observation]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    yield Observation(usage.ru_utime + usage.ru_stime)


def _max_rss(options: CallbackOptions) -> Iterable[Observation]:
    yield Observation(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux
