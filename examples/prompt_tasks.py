"""Prompt tasks in a DAG: a simulation's results go into a prompt, and the answer into a
report, on the concurrent backend.

The completion function here answers locally, so the example runs anywhere; point
``prompt=`` at a function that calls your model instead (the docs' Prompt tasks page shows
one for any OpenAI-compatible server).

    python examples/prompt_tasks.py
"""

import asyncio

from asyncflow import WorkflowEngine
from asyncflow_concurrent import ConcurrentExecutionBackend


async def complete(prompt: str, description: dict) -> str:
    """Stands in for a model: the first line of the prompt, and the model asked for."""
    await asyncio.sleep(0.01)  # a request would be awaited here
    return f"[{description.get('model', 'local')}] noted: {prompt.splitlines()[0]}"


async def main():
    backend = ConcurrentExecutionBackend(prompt=complete)
    async with WorkflowEngine.create(backend=backend) as flow:

        @flow.function_task
        async def simulate(temperature: float) -> float:
            return round(1.5 * temperature - 3.0, 2)

        @flow.prompt_task(task_description={"model": "summarizer"})
        def summarize(temperature: float, energy: float) -> str:
            return (f"At T={temperature} the energy is {energy}.\n"
                    "Is this run stable? Answer in one sentence.")

        @flow.function_task
        def report(answers: list[str]) -> str:
            return "\n".join(answers)

        temperatures = [2.0, 4.0, 8.0]
        answers = [summarize(t, simulate(t)) for t in temperatures]
        print(await report(answers))


if __name__ == "__main__":
    asyncio.run(main())
