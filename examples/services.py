"""A service task: a small HTTP server, ready when it says it listens, used by two clients.

    python examples/services.py

The server's future resolves once its output says which port it listens on; the clients
take the endpoint (host, port) as an argument. The engine's shutdown stops the server.
"""

import asyncio
import sys
import urllib.request

from asyncflow import ServiceEndpoint, WorkflowEngine


async def main() -> None:
    async with WorkflowEngine.create("concurrent") as flow:

        @flow.executable_task(service=True, task_description={
            "ready_line": r"port (?P<port>\d+)", "ready_timeout": 30})
        def http_server() -> str:
            return f"{sys.executable} -u -m http.server 0 --bind 127.0.0.1"

        @flow.function_task
        def fetch(server: ServiceEndpoint, path: str) -> int:
            with urllib.request.urlopen(f"http://{server.address}{path}") as reply:
                return reply.status

        server = http_server()
        statuses = await asyncio.gather(fetch(server, "/"), fetch(server, "/"))
        endpoint = await server
        print(f"server {endpoint.name} (pid {endpoint.pid}) at {endpoint.address}: {statuses}")


if __name__ == "__main__":
    asyncio.run(main())
