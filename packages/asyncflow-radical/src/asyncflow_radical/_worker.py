"""The RAPTOR worker of AsyncFlow's function tasks; RAPTOR loads it on the pilot.

RADICAL-Pilot's ``DefaultWorker`` ignores ``cancel_tasks``: a function task, once RAPTOR has
it, runs to its end. This worker hears the cancellation on the pilot's control channel and
passes it to the task's process (see :func:`asyncflow_radical._remote.request_cancel`), which
stops the function and reports back through the normal path, so its cores are freed.

It also imports the module of each task's function once, before forking for the task: every
later task of that module then starts with it imported, instead of importing it again.

RAPTOR executes this file by path, from a copy in the worker's sandbox: it imports only
installed modules. It is never imported on the client.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from radical.pilot.raptor.worker_default import DefaultWorker

from asyncflow_radical._remote import request_cancel


class AsyncflowWorker(DefaultWorker):  # type: ignore[misc]  # radical.pilot is untyped
    """``DefaultWorker`` that can stop the function tasks it was given."""

    def __init__(self, raptor_id: str) -> None:
        self._imported: set[str] = set()  # before super(): it starts taking requests
        super().__init__(raptor_id)

    def _request_cb(self, tasks: Any) -> Any:
        for task in tasks if isinstance(tasks, list) else [tasks]:
            metadata = (task.get("description") or {}).get("metadata") or {}
            module = metadata.get("asyncflow_module")
            if module and module not in self._imported:
                self._imported.add(module)
                with contextlib.suppress(Exception):  # the task itself will say what is wrong
                    importlib.import_module(module)
        return super()._request_cb(tasks)

    def _control_cb(self, topic: str, msg: dict[str, Any]) -> Any:
        if msg.get("cmd") == "cancel_tasks":
            for uid in (msg.get("arg") or {}).get("uids", ()):
                request_cancel(uid)
        return super()._control_cb(topic, msg)
