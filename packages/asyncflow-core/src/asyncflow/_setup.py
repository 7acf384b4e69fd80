"""``WorkflowEngine.create()``'s step from settings to objects.

The configuration is read once per ``create()``; what it says becomes the engine's backends,
its observers (the progress display, the journal, the task graph) and, for a resumed run, its
result store. The engine is handed these and builds none of them. It is handed the settings
too, for the plugins that read keys of their own (``telemetry``: asyncflow-otel) in their
``asyncflow_engine_configured`` hook when the engine starts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asyncflow._config import BackendArg, resolve_backends
from asyncflow.config import load


def engine_arguments(backend: BackendArg, options: Mapping[str, Any], *,
                     config: str | Path | None, dry_run: bool, uid: str | None,
                     work_dir: str | Path | None, shutdown_timeout: float, progress: Any,
                     journal: bool | None, resume: bool | str | None,
                     graph: bool | None, telemetry: bool | None,
                     observers: Sequence[object]) -> dict[str, Any]:
    """The keyword arguments of :class:`~asyncflow.WorkflowEngine` for a ``create()`` call;
    ``None`` observability arguments take the configured value."""
    settings = functools.cache(functools.partial(load, config))
    if telemetry is not None:  # create(telemetry=...) decides, over every source
        table = settings().telemetry
        settings().telemetry = (table if isinstance(table, dict) else {}) if telemetry else False
        settings().sources["telemetry"] = "WorkflowEngine.create(telemetry=...)"
    # Before anything below takes hold of a resource (a resumed run's lock): a key whose
    # plugin is missing stops create() here.
    settings().require_plugins()
    dag_file = None
    if progress is None:
        progress = settings().progress
    if journal is None:
        journal = settings().journal
    if resume is None:
        resume = settings().resume
    if graph is None:
        dag_file = settings().dag
    observers = list(observers)
    results = None
    if progress:
        from asyncflow.progress import ProgressPlugin, console_for

        console = console_for(progress)
        if console is not None:
            observers.append(ProgressPlugin(console))
    if journal or resume:
        from asyncflow.journal import JournalPlugin, find_run

        runs = Path(work_dir) if work_dir is not None else Path.cwd()
        if resume:
            uid = find_run(runs, resume, uid)
        recorder = JournalPlugin(resume=bool(resume),
                                 run=(runs / uid, uid) if uid is not None else None)
        observers.append(recorder)
        results = recorder if resume else None
    if graph or dag_file is not None:
        from asyncflow.graph import GraphPlugin

        observers.append(GraphPlugin(dag_file))
    return {"backends": resolve_backends(backend, options, settings=settings, config=config,
                                         dry_run=dry_run),
            "uid": uid, "work_dir": work_dir, "dry_run": dry_run,
            "shutdown_timeout": shutdown_timeout, "observers": observers, "results": results,
            "settings": settings()}
