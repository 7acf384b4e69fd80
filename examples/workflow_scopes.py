"""Workflow scopes: two campaigns share one engine, and every task knows which one it is
part of; the journal, the report and the task graph group the tasks the same way.

    python examples/workflow_scopes.py
    asyncflow report asyncflow.session.<uid>     # the report's Workflows table
"""

import asyncio

from asyncflow import WorkflowEngine


async def main():
    async with WorkflowEngine.create(journal=True, graph=True) as flow:

        @flow.function_task
        async def simulate(campaign: str, step: int) -> str:
            await asyncio.sleep(0.01)
            return f"{campaign}-{step}"

        @flow.function_task
        def analyse(*results: str) -> int:
            return len(results)

        @flow.block
        async def refine(campaign: str) -> int:
            # A block is a workflow scope of its own: its tasks carry the block's uid.
            return await analyse(*(simulate(campaign, step) for step in range(2)))

        async def campaign(name: str) -> None:
            # Each campaign runs as a child of asyncio.gather below, in a context of its own:
            # the two scopes are open at the same time and never mix.
            async with flow.workflow_scope(name) as wid:
                results = await asyncio.gather(simulate(name, 0), simulate(name, 1))
                checked = analyse(*results)
                refined = refine(name)
                print(f"{wid}: {await checked} results, refined {await refined}; "
                      f"tasks carry {checked.workflow_id!r}, the block {refined.uid!r} too, "
                      f"and the block's tasks carry {refined.uid!r}")

        await asyncio.gather(campaign("alpha"), campaign("beta"))
        audit = simulate("audit", 0, workflow_id="audit")  # one call, its own workflow
        print(f"{await audit} ran in workflow {audit.workflow_id!r}")
    print(f"journal: {flow.work_dir / flow.uid / 'journal.sqlite'}")
    print(flow.graph().to_mermaid())


if __name__ == "__main__":
    asyncio.run(main())
