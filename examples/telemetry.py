"""Telemetry of a composite workflow: events as they happen, then the spans and a summary.

    pip install asyncflow-otel
    python examples/telemetry.py

Written for the ``radical.asyncflow`` spelling, as RADICAL AsyncFlow's users write it.
"""

import asyncio
import json

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine


async def main() -> None:
    spans = InMemorySpanExporter()  # or BatchSpanProcessor(OTLPSpanExporter()) in production
    backend = await ConcurrentExecutionBackend()
    flow = await WorkflowEngine.create(backend=backend)
    telemetry = await flow.start_telemetry(span_processors=[SimpleSpanProcessor(spans)],
                                           metric_readers=[InMemoryMetricReader()])
    telemetry.subscribe(lambda event: print(event.name, event.task_name))

    @flow.function_task
    async def simulate(i: int) -> int:
        return i * i

    @flow.function_task
    async def analyse(*values: int) -> int:
        return sum(values)

    @flow.block
    async def campaign(n: int) -> int:
        return await analyse(*(simulate(i) for i in range(n)))

    print(await asyncio.gather(campaign(3), campaign(4)))
    await flow.shutdown()
    for span in spans.get_finished_spans():
        parent = span.parent.span_id if span.parent else None
        print(f"{span.name:<20} {span.attributes.get('asyncflow.outcome', '')!s:<5} "
              f"parent={parent}")
    print(json.dumps(telemetry.summary()["tasks"]))


if __name__ == "__main__":
    asyncio.run(main())
