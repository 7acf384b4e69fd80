"""Prompt tasks on the concurrent backend: the completion function given as ``prompt=``."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from concurrent_support import LIMIT

from asyncflow import CapabilityError, TaskState, TaskTimeoutError, WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend


async def answer_async(prompt: str, description: Mapping[str, Any]) -> str:
    await asyncio.sleep(0)  # a client's request, suspended like one
    return f"{description.get('model', 'none')} says: {prompt}"


def answer_in_thread(prompt: str, description: Mapping[str, Any]) -> tuple[str, int]:
    return f"{description.get('model', 'none')} says: {prompt}", threading.get_ident()


def executor(mode: str) -> Any:
    return {"loop": None, "threads": ThreadPoolExecutor(2), "processes": ProcessPoolExecutor(1)}[
        mode]


async def test_an_async_completion_answers_on_the_engines_loop(mode: str) -> None:
    backend = ConcurrentExecutionBackend(executor(mode), prompt=answer_async)
    async with WorkflowEngine.create(backend=backend) as flow:
        @flow.function_task
        def topic() -> str:
            return "dags"

        @flow.prompt_task(task_description={"model": "tiny"})
        def ask(subject: str) -> str:
            return f"Explain {subject}."

        future = ask(topic())
        assert await future == "tiny says: Explain dags."
        assert future.state == TaskState.DONE


async def test_a_plain_completion_runs_in_a_thread_not_on_the_loop(mode: str) -> None:
    backend = ConcurrentExecutionBackend(executor(mode), prompt=answer_in_thread)
    async with WorkflowEngine.create(backend=backend) as flow:
        @flow.prompt_task
        def ask() -> str:
            return "Where do you run?"

        text, thread = await ask()
    assert text == "none says: Where do you run?"
    assert thread != threading.get_ident()


async def test_the_completion_is_named_in_the_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "team_llm.py").write_text(textwrap.dedent("""
        async def complete(prompt, description):
            return f"configured: {prompt} ({description['model']})"
    """))
    (tmp_path / "asyncflow.toml").write_text(textwrap.dedent("""
        backend = "concurrent"
        [backends.concurrent]
        prompt = "team_llm:complete"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    async with WorkflowEngine.create() as flow:
        @flow.prompt_task(task_description={"model": "m1"})
        def ask() -> str:
            return "Configured?"

        assert await ask() == "configured: Configured? (m1)"


async def test_without_a_completion_a_prompt_fails_saying_how_to_give_one() -> None:
    async with WorkflowEngine.create(backend=ConcurrentExecutionBackend()) as flow:
        @flow.prompt_task
        def ask() -> str:
            return "Anyone?"

        @flow.function_task
        def other() -> int:
            return 1

        with pytest.raises(CapabilityError) as raised:
            await ask()
        assert await other() == 1
    assert isinstance(raised.value, NotImplementedError)  # what upstream's Local raised
    message = str(raised.value)
    assert "prompt task 'ask' (task.000001)" in message
    assert "ConcurrentExecutionBackend(prompt=" in message
    assert "[backends.concurrent]" in message


@pytest.mark.parametrize(("name", "error", "fragment"), [
    ("no_such_module_for_asyncflow:complete", ValueError, "cannot be imported"),
    ("os.path:no_such_function", ValueError, "cannot be imported"),
    ("os:sep", TypeError, "names a str, not a function"),
])
def test_a_bad_completion_name_is_refused_at_construction(
        name: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment) as raised:
        ConcurrentExecutionBackend(prompt=name)
    assert f"prompt={name!r}" in str(raised.value)


async def test_a_plain_completion_that_returns_a_coroutine_is_an_error() -> None:
    def sneaky(prompt: str, description: Mapping[str, Any]) -> Any:
        return answer_async(prompt, description)

    async with WorkflowEngine.create(backend=ConcurrentExecutionBackend(prompt=sneaky)) as flow:
        @flow.prompt_task
        def ask() -> str:
            return "Async?"

        with pytest.raises(TypeError, match="declare it `async def`"):
            await ask()


async def test_a_slow_answer_times_out_and_a_running_one_can_be_cancelled() -> None:
    started = asyncio.Queue[str]()
    stopped: list[str] = []

    async def forever(prompt: str, description: Mapping[str, Any]) -> str:
        started.put_nowait(prompt)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(prompt)
            raise
        return "never"

    async with WorkflowEngine.create(backend=ConcurrentExecutionBackend(prompt=forever)) as flow:
        @flow.prompt_task(timeout=0.2)
        def timed() -> str:
            return "timed"

        @flow.prompt_task
        def cancelled() -> str:
            return "cancelled"

        with pytest.raises(TaskTimeoutError):
            await asyncio.wait_for(timed(), LIMIT)
        future = cancelled()
        assert await asyncio.wait_for(started.get(), LIMIT) == "timed"
        assert await asyncio.wait_for(started.get(), LIMIT) == "cancelled"
        future.cancel()
        with pytest.raises(asyncio.CancelledError):
            await future
    assert stopped == ["timed", "cancelled"]


# -- upstream's names, on the radical.asyncflow alias -----------------------------------------


async def test_local_backend_prompt_task_raises_not_implemented() -> None:
    from radical.asyncflow import LocalExecutionBackend
    from radical.asyncflow import WorkflowEngine as Engine

    local = await LocalExecutionBackend()
    async with Engine.create(backend=local) as flow:
        @flow.prompt_task
        async def ask(question: str) -> str:
            return f"Q: {question}"

        with pytest.raises(NotImplementedError, match="LocalExecutionBackend"):
            await ask("test?")


async def test_function_task_and_prompt_task_route_to_separate_backends() -> None:
    from radical.asyncflow import NoopExecutionBackend
    from radical.asyncflow import WorkflowEngine as Engine

    compute = ConcurrentExecutionBackend()
    async with Engine.create(backend=[compute, NoopExecutionBackend()]) as flow:
        @flow.function_task(backend="concurrent")
        async def preprocess(text: str) -> str:
            return text.strip()

        @flow.prompt_task(backend="noop")
        async def summarize(text: str) -> str:
            return f"Summarize: {text}"

        cleaned = preprocess("  hello  ")
        assert await summarize(cleaned) == "Dummy Prompt Output"
        assert await cleaned == "hello"  # really run, on the compute backend


async def test_mixed_routing_concurrent_pipelines() -> None:
    from radical.asyncflow import WorkflowEngine as Engine

    ai = ConcurrentExecutionBackend(prompt=answer_async)
    async with Engine.create(backend=[ai, "noop"]) as flow:
        @flow.function_task(backend="noop")
        async def preprocess(text: str) -> str:
            return text.strip()

        @flow.prompt_task  # the default backend, which answers prompts
        async def summarize(clean: str) -> str:
            return f"Q: {clean}"

        @flow.function_task
        async def postprocess(summary: str) -> str:
            return f"[result] {summary}"

        async def pipeline(doc: str) -> str:
            return await postprocess(summarize(preprocess(doc)))

        results = await asyncio.gather(*(pipeline(f"doc-{i}") for i in range(16)))
    assert results == ["[result] none says: Q: Dummy Output"] * 16
