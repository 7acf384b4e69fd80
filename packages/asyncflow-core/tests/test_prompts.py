"""Issue 13, point 1: prompt tasks, answered by a backend that declares ``prompt_tasks``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import radical.asyncflow
from loop_backend import LoopBackend
from recording_observer import Observer

from asyncflow import (
    Capabilities,
    CapabilityError,
    DependencyFailureError,
    TaskKind,
    TaskSpec,
    TaskState,
    WorkflowEngine,
)


class AnsweringBackend(LoopBackend):
    """The test backend, answering prompts too: the answer quotes the prompt and the model."""

    name = "answering"
    capabilities = Capabilities(function_tasks=True, executable_tasks=True, timeouts=True,
                                prompt_tasks=True)

    async def _body(self, spec: TaskSpec) -> Any:
        if spec.kind is not TaskKind.PROMPT:
            return await super()._body(spec)
        await asyncio.sleep(0)  # answered asynchronously, like a model's client would
        return answer(spec.prompt or "", spec.description)


def answer(prompt: str, description: Mapping[str, Any]) -> str:
    return f"[{description.get('model', 'default')}] {prompt}"


@pytest.fixture
async def answering() -> Any:
    backend = AnsweringBackend()
    async with WorkflowEngine.create(backend=backend) as flow:
        yield flow, backend


async def test_a_prompt_task_returns_the_backends_answer(answering: Any) -> None:
    flow, backend = answering

    @flow.prompt_task
    async def ask(question: str) -> str:
        return f"What is {question}?"

    future = ask("2 + 2")
    assert future.state == TaskState.PENDING
    assert await future == "[default] What is 2 + 2?"
    (spec,) = backend.specs
    assert (spec.kind, spec.prompt, spec.function, spec.command) == (
        TaskKind.PROMPT, "What is 2 + 2?", None, None)


async def test_the_prompt_quotes_upstream_results_and_the_answer_feeds_downstream(
        answering: Any) -> None:
    flow, _ = answering

    @flow.function_task
    def measure() -> int:
        return 42

    @flow.prompt_task  # a plain def body works as well
    def explain(value: int) -> str:
        return f"Explain {value}."

    @flow.function_task
    async def shout(text: str) -> str:
        return text.upper()

    assert await shout(explain(measure())) == "[DEFAULT] EXPLAIN 42."


async def test_task_description_reaches_the_backend_merged_with_the_call(
        answering: Any) -> None:
    flow, backend = answering

    @flow.prompt_task(task_description={"model": "small", "temperature": 0.1}, timeout=30)
    def ask() -> str:
        return "Hello?"

    assert await ask() == "[small] Hello?"
    assert await ask(task_description={"model": "large"}) == "[large] Hello?"
    first, second = backend.specs
    assert first.description == {"model": "small", "temperature": 0.1}
    assert second.description == {"model": "large", "temperature": 0.1}
    assert first.timeout == 30


@pytest.mark.parametrize("prompt", [None, "", "   ", 42, ["a list"]])
async def test_a_body_that_returns_no_prompt_fails_naming_the_task(
        answering: Any, prompt: Any) -> None:
    flow, backend = answering

    @flow.prompt_task
    def broken() -> Any:
        return prompt

    with pytest.raises(ValueError, match=r"prompt task 'broken' must return a non-empty "
                                         r"string prompt"):
        await broken()
    assert backend.specs == []  # nothing was sent


async def test_a_failing_body_fails_its_task_and_its_dependents(answering: Any) -> None:
    flow, _ = answering

    @flow.prompt_task
    def broken() -> str:
        raise KeyError("no template")

    @flow.function_task
    def after(text: str) -> str:
        return text

    first = broken()
    second = after(first)
    with pytest.raises(KeyError, match="no template"):
        await first
    with pytest.raises(DependencyFailureError) as raised:
        await second
    assert isinstance(raised.value.root_cause, KeyError)
    assert await flow.prompt_task(lambda: "still works")() == "[default] still works"


async def test_a_backend_without_prompt_tasks_refuses_them_before_submission(
        flow: WorkflowEngine, backend: LoopBackend) -> None:
    @flow.prompt_task
    def ask() -> str:
        return "Anyone there?"

    @flow.function_task
    def fine() -> str:
        return "fine"

    with pytest.raises(CapabilityError, match=r"task 'ask' \(task\.000001\) needs prompt_tasks"
                                              r", which backend 'loop'"):
        await ask()
    assert await fine() == "fine"
    assert [spec.name for spec in backend.specs] == ["fine"]


async def test_backend_routes_prompts_like_any_task() -> None:
    loop, answering = LoopBackend(), AnsweringBackend()
    async with WorkflowEngine.create(backend=[loop, answering]) as flow:
        @flow.function_task
        def compute() -> int:
            return 7

        @flow.prompt_task(backend="answering")
        def ask(n: int) -> str:
            return f"Is {n} prime?"

        @flow.prompt_task(backend="nowhere")
        def lost() -> str:
            return "Where am I?"

        assert await ask(compute()) == "[default] Is 7 prime?"
        assert [s.name for s in loop.specs] == ["compute"]
        assert [s.name for s in answering.specs] == ["ask"]
        with pytest.raises(LookupError, match=r"'lost'.*'nowhere'"):
            await lost()


async def test_retries_run_the_prompt_again(observer: Observer) -> None:
    class FlakyBackend(AnsweringBackend):
        async def _body(self, spec: TaskSpec) -> Any:
            if spec.kind is TaskKind.PROMPT and spec.attempt == 1:
                raise ConnectionError("the model's server hung up")
            return await super()._body(spec)

    async with WorkflowEngine.create(backend=FlakyBackend()) as flow:
        @flow.prompt_task(retries=1)
        def ask() -> str:
            return "Again?"

        future = ask()
        assert await future == "[default] Again?"
    assert TaskState.PENDING in observer.states(future.uid)[1:]  # the retry


async def test_observers_see_the_prompt_kind(tmp_path: Any) -> None:
    from asyncflow.journal import read_run

    async with WorkflowEngine.create(backend=AnsweringBackend(), work_dir=tmp_path,
                                     journal=True, graph=True) as flow:
        @flow.prompt_task
        def ask() -> str:
            return "Kind?"

        await ask()
    (task,) = read_run(tmp_path / flow.uid).tasks.values()
    assert (task.kind, task.state) == ("prompt", "DONE")
    assert 'task_000001{{"ask<br/>task.000001"}}' in flow.graph().to_mermaid()


# -- upstream's names, on the radical.asyncflow alias -----------------------------------------


async def test_prompt_task_decorator_exists() -> None:
    flow = await radical.asyncflow.WorkflowEngine.create(dry_run=True)
    try:
        assert callable(flow.prompt_task)
    finally:
        await flow.shutdown()


async def test_prompt_task_invalid_return_raises() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        @flow.prompt_task
        async def nothing() -> None:
            return None

        with pytest.raises(ValueError, match="non-empty string prompt"):
            await nothing()


async def test_prompt_task_empty_string_raises() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        @flow.prompt_task
        async def empty() -> str:
            return ""

        with pytest.raises(ValueError, match="non-empty string prompt"):
            await empty()


async def test_prompt_task_result_via_noop() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        @flow.prompt_task
        async def summarize(text: str) -> str:
            return f"Summarize: {text}"

        @flow.function_task
        async def count(text: str) -> int:
            return len(text)

        assert await summarize("hello world") == "Dummy Prompt Output"
        assert await count(summarize("x")) == "Dummy Output"  # noop runs no body at all


async def test_routed_task_resolves_on_correct_backend() -> None:
    async with radical.asyncflow.WorkflowEngine.create(backend=[LoopBackend(), "noop"]) as flow:
        @flow.prompt_task(backend="noop")
        async def ask_ai(question: str) -> str:
            return f"Q: {question}"

        assert await ask_ai("hello?") == "Dummy Prompt Output"


async def test_prompt_task_end_to_end_dry_run() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        @flow.prompt_task
        async def summarize(text: str) -> str:
            return f"Please summarize: {text}"

        future = summarize("AsyncFlow is a workflow engine.")
        assert await future == "Dummy Prompt Output"
        assert future.state == TaskState.DONE


async def test_prompt_task_in_dag(answering: Any) -> None:
    flow, backend = answering  # a backend that runs bodies, so the order is observable

    @flow.function_task
    async def preprocess(raw: str) -> str:
        return raw.strip().lower()

    @flow.prompt_task
    async def summarize(clean_text: str) -> str:
        return f"Summarize: {clean_text}"

    assert await summarize(preprocess("  Hello World  ")) == "[default] Summarize: hello world"
    assert [spec.name for spec in backend.specs] == ["preprocess", "summarize"]


async def test_prompt_task_concurrent_workflows() -> None:
    async with radical.asyncflow.WorkflowEngine.create(dry_run=True) as flow:
        @flow.function_task
        async def preprocess(text: str) -> str:
            return text.strip()

        @flow.prompt_task
        async def summarize(text: str) -> str:
            return f"Summarize: {text}"

        @flow.function_task
        async def postprocess(summary: str) -> str:
            return f"[done] {summary}"

        async def pipeline(doc: str) -> tuple[Any, Any]:
            summary = summarize(preprocess(doc))
            return await summary, await postprocess(summary)

        results = await asyncio.gather(*(pipeline(f"Document {i}") for i in range(8)))
    # noop runs no body: functions give "Dummy Output", prompts "Dummy Prompt Output"
    assert results == [("Dummy Prompt Output", "Dummy Output")] * 8


async def test_default_backend_handles_unrouted_tasks() -> None:
    loop = LoopBackend()
    async with radical.asyncflow.WorkflowEngine.create(backend=[loop, "noop"]) as flow:
        @flow.function_task
        async def unrouted() -> str:
            return "unrouted result"

        @flow.prompt_task  # unrouted too, so the default backend's capabilities decide
        def ask() -> str:
            return "Who answers?"

        assert await unrouted() == "unrouted result"
        with pytest.raises(CapabilityError, match="backend 'loop'"):
            await ask()
    assert [spec.name for spec in loop.specs] == ["unrouted"]
