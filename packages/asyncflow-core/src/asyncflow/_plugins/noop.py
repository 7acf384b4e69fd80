"""The built-in ``noop`` backend: a dry run that executes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from asyncflow.backend import Capabilities, ExecutionBackend, TaskKind, TaskSpec, TaskUpdate
from asyncflow.hookspecs import hookimpl
from asyncflow.registry import BackendRegistry

DUMMY_OUTPUT = "Dummy Output"
DUMMY_PROMPT_OUTPUT = "Dummy Prompt Output"


class NoopExecutionBackend(ExecutionBackend):
    """Accepts every task and completes it at once with ``"Dummy Output"`` (a prompt task
    with ``"Dummy Prompt Output"``).

    Function bodies are not called and commands are not executed: it shows what a workflow
    would submit, and measures the engine alone. ``dry_run=True`` uses it for every backend.
    """

    name = "noop"
    capabilities = Capabilities(
        function_tasks=True, executable_tasks=True, cancel_running=True, capture_stdio=True,
        timeouts=True, file_staging=True, resources=True, prompt_tasks=True,
        services=True,  # a dry run of a workflow with services plans them too
    )

    def __init__(self) -> None:
        super().__init__()

    async def start(self) -> None:
        pass

    async def submit(self, tasks: Sequence[TaskSpec]) -> None:
        report = self.report
        prompt = TaskKind.PROMPT
        for spec in tasks:
            report(TaskUpdate.done(spec.uid, DUMMY_PROMPT_OUTPUT if spec.kind is prompt
                                   else DUMMY_OUTPUT))

    async def cancel(self, uid: str) -> bool:
        return False  # every task is already done

    async def shutdown(self) -> None:
        pass


@hookimpl
def asyncflow_register_backends(registry: BackendRegistry) -> None:
    registry.add(NoopExecutionBackend, aliases=("dry_run",))
