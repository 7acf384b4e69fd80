"""The systems the benchmark compares, and the floor each one is measured against.

A system is opened by ``module:function`` (imported lazily, in the child process only, so a
peer's packages are needed only by the interpreter that runs it). ``peer`` systems run with the
peers' interpreter (``--peer-python``): upstream ``radical.asyncflow`` shares an import name
with this project's alias and cannot live in the same environment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    name: str
    opener: str
    """``module:function`` returning an :class:`shapes.Api` (awaited in the child)."""
    floor: str
    """The system whose time on the same shape is this one's 1.0."""
    description: str
    peer: bool = False
    runs_bodies: bool = True
    """``False`` for dry runs (noop backends): results are dummies and are not checked."""


FLOORS = ("asyncio", "asyncio-threads")

SYSTEMS: dict[str, System] = {s.name: s for s in (
    System("asyncio", "floors:open_asyncio", "asyncio",
           "the floor: create_task + gather, async bodies on the loop"),
    System("asyncio-threads", "floors:open_asyncio_threads", "asyncio-threads",
           "the thread floor: sync bodies through loop.run_in_executor(ThreadPoolExecutor(8))"),
    System("asyncflow-noop", "engine:open_noop", "asyncio",
           "this engine, backend noop: the engine alone, bodies not run", runs_bodies=False),
    System("asyncflow-onloop", "engine:open_onloop", "asyncio",
           "this engine, ConcurrentExecutionBackend() with no executor: async bodies on the "
           "loop"),
    System("asyncflow-threads", "engine:open_threads", "asyncio-threads",
           "this engine, ConcurrentExecutionBackend(ThreadPoolExecutor(8)), sync bodies"),
    System("asyncflow-threads-async", "engine:open_threads_async", "asyncio-threads",
           "this engine, ConcurrentExecutionBackend(ThreadPoolExecutor(8)), async bodies "
           "(the seed's set-up: a persistent loop per worker thread)"),
    System("radical-local", "peers:open_radical_local", "asyncio-threads",
           "radical.asyncflow 0.6.0, LocalExecutionBackend(ThreadPoolExecutor(8)), async "
           "bodies", peer=True),
    System("radical-noop", "peers:open_radical_noop", "asyncio",
           "radical.asyncflow 0.6.0, NoopExecutionBackend (bodies not run)", peer=True,
           runs_bodies=False),
    System("parsl-threads", "peers:open_parsl", "asyncio-threads",
           "Parsl, ThreadPoolExecutor(max_threads=8), python_app, logging off", peer=True),
    System("dask-threads", "peers:open_dask", "asyncio-threads",
           "Dask distributed, in-process LocalCluster(1 worker x 8 threads), client.submit",
           peer=True),
)}

DEFAULT = ("asyncio", "asyncio-threads", "asyncflow-noop", "asyncflow-onloop",
           "asyncflow-threads", "asyncflow-threads-async")
PEERS = ("radical-local", "radical-noop", "parsl-threads", "dask-threads")
