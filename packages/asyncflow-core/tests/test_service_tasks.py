"""Service tasks in the engine: the ``services`` capability gate, the decorator option, the
readiness keys, and what the engine does with a service that ends after it was ready."""

from __future__ import annotations

import asyncio

import pytest
from loop_backend import LoopBackend

from asyncflow import (
    CapabilityError,
    ServiceEndpoint,
    ServiceExitedError,
    TaskUpdate,
    WorkflowEngine,
    hookimpl,
)
from asyncflow.services import readiness

pytestmark = pytest.mark.timeout(30)


async def test_a_backend_without_services_refuses_them_before_submission(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.executable_task(service=True)
    def serve() -> str:
        return "sleep 60"

    @flow.function_task(service=True)
    async def serve_function() -> None:
        await asyncio.Event().wait()

    for service in (serve(), serve_function()):
        with pytest.raises(CapabilityError, match=r"needs services, which backend 'loop'"):
            await service
    assert backend.batches == []  # never submitted


async def test_blocks_cannot_be_services(flow: WorkflowEngine) -> None:
    with pytest.raises(TypeError, match="@block on 'group': service=True is for function"):
        @flow.block(service=True)
        async def group() -> None:
            pass


async def test_a_service_has_a_ready_timeout_not_a_timeout(flow: WorkflowEngine) -> None:
    with pytest.raises(ValueError, match="@executable_task on 'serve': a service runs until"):
        @flow.executable_task(service=True, timeout=5)
        def serve() -> str:
            return "sleep 60"


async def test_a_dry_run_plans_services_too(noop_flow: WorkflowEngine) -> None:
    @noop_flow.executable_task(service=True, task_description={"ready_port": 8080})
    def serve() -> str:
        return "server --port 8080"

    assert await serve() == "Dummy Output"


def test_readiness_from_the_task_description() -> None:
    ready = readiness("db", {"ready_port": 5432, "ready_host": "localhost",
                             "ready_line": "accepting connections", "ready_timeout": 5})
    assert (ready.port, ready.host, ready.timeout) == (5432, "localhost", 5.0)
    assert ready.describe() == ("port localhost:5432 accepting and an output line matching "
                                "'accepting connections'")
    assert readiness("db", {}).describe() == "started"
    with pytest.raises(ValueError, match="service 'db': ready_timeout"):
        readiness("db", {"ready_timeout": 0})
    with pytest.raises(TypeError, match="service 'db': ready_line"):
        readiness("db", {"ready_line": 42})


class ServiceBackend(LoopBackend):
    """Reports every service ready at once; the test then says it ended."""

    name = "services"
    capabilities = LoopBackend.capabilities.__class__(function_tasks=True, services=True)

    async def submit(self, tasks):  # type: ignore[no-untyped-def]
        for spec in tasks:
            assert spec.service is not None
            self.report(TaskUpdate.done(spec.uid, ServiceEndpoint(spec.uid, spec.name,
                                                                  spec.service.host)))


async def test_an_end_after_readiness_is_logged_and_observed_once(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, BaseException | None]] = []

    class Watcher:
        @hookimpl
        def asyncflow_service_exited(self, service, error):  # type: ignore[no-untyped-def]
            seen.append((service.uid, error))

    backend = ServiceBackend()
    async with WorkflowEngine.create(backend, observers=[Watcher()]) as flow:
        @flow.function_task(service=True)
        async def serve() -> None:
            pass

        endpoint = await serve()
        assert endpoint.uid == "task.000001"
        error = ServiceExitedError("serve", 1, "gone", ready=True)
        backend.report(TaskUpdate.failed(endpoint.uid, error))
        backend.report(TaskUpdate.failed(endpoint.uid, error))  # a second one is ignored
        assert seen == [("task.000001", error)]
        assert "service 'serve' (task.000001) stopped while the workflow was running" \
            in caplog.text
        again = await serve()
    backend.report(TaskUpdate.failed(again.uid, error))  # after the shutdown: expected
    assert len(seen) == 1

