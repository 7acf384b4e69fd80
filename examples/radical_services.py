"""A service task on a RADICAL-Pilot pilot: an HTTP server, ready once it prints its port,
a client task that talks to it, and the server stopped before the engine shuts down.

    python examples/radical_services.py       # in a virtualenv with asyncflow-radical
"""

import asyncio
import shlex
import sys

from asyncflow import ServiceEndpoint, WorkflowEngine


async def main() -> None:
    async with WorkflowEngine.create("radical", resource="local.localhost", cores=4) as flow:

        @flow.executable_task(service=True, task_description={
            "ready_line": r"port (?P<port>\d+)", "ready_timeout": 60})
        def http_server() -> str:
            return f"{sys.executable} -u -m http.server 0 --bind 127.0.0.1"

        @flow.executable_task
        def fetch(server: ServiceEndpoint) -> str:
            code = ("import urllib.request as r; "
                    f"print(r.urlopen('http://{server.address}/').status)")
            return shlex.join([sys.executable, "-c", code])

        server = http_server()
        status = await fetch(server)
        endpoint = await server
        print(f"{endpoint.name} at {endpoint.address} answered {status.strip()}")
        print(f"stopped: {await flow.stop_service(server)}")


asyncio.run(main())
