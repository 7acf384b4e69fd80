"""The conformance kit of asyncflow-core, on the session's pilot.

The kit builds a fresh backend for each test; a fresh pilot each time would cost ~25 s, so
:meth:`make_backend` returns a share of the session's pilot instead. The tests that build
the backend by name (``WorkflowEngine.create(backend="radical", ...)``) start a pilot of
their own, as a user's program would.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from conftest import OPTIONS

from asyncflow import ExecutionBackend
from asyncflow.testing import BackendConformance
from asyncflow_radical import RadicalExecutionBackend


class TestRadicalConformance(BackendConformance):
    backend_name = "radical"
    backend_options: ClassVar = OPTIONS
    timeout = 150.0  # a by-name test starts and stops a pilot of its own: ~30 s of it
    many = 300  # RAPTOR runs ~30 tiny functions a second on this machine's two cores

    @pytest.fixture(autouse=True)
    def _shared_pilot(self, pilot: RadicalExecutionBackend) -> None:
        self.pilot = pilot

    def make_backend(self) -> ExecutionBackend:
        return self.pilot.share()
