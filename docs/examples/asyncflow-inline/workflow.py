"""A workflow that names no backend: asyncflow.toml in the working directory picks one."""

import asyncio

from asyncflow import WorkflowEngine


async def main() -> None:
    flow = await WorkflowEngine.create()
    try:

        @flow.function_task
        def square(x: int) -> int:  # a plain def: runs in a worker thread
            return x * x

        @flow.function_task
        async def total(*values: int) -> int:  # an async def: runs on the event loop
            return sum(values)

        result = await total(*[square(i) for i in range(10)])
        print(f"ran on {flow.default_backend!r}: sum of squares below 10 = {result}")
    finally:
        await flow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
