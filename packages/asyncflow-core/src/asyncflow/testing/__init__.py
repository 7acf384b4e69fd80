"""The conformance kit for backend authors: the backend contract as a pytest class, and the
recording sink it drives backends with.

Subclass :class:`BackendConformance` in your plugin's tests and every part of the contract
the backend's capabilities cover is tested::

    from asyncflow.testing import BackendConformance

    class TestInlineConformance(BackendConformance):
        backend_name = "inline"

For your backend's own tests, drive it directly and let a :class:`Recorder` check every
update it reports against the same contract::

    from asyncflow.testing import Recorder

    async def test_my_backend_runs_a_task() -> None:
        recorder = Recorder(timeout=30)
        backend = MyBackend()
        backend.attach(recorder)
        async with backend:
            recorder.expect([spec.uid])
            await backend.submit([spec])
            assert (await recorder.terminal(spec.uid)).value == 42
        assert recorder.states(spec.uid) == [TaskState.RUNNING, TaskState.DONE]
        assert recorder.violations == []

It needs ``pip install "asyncflow-core[testing]"`` and nothing in ``conftest.py``.
"""

from asyncflow.testing._bodies import ConformanceError, echo_completion
from asyncflow.testing._harness import Recorder
from asyncflow.testing.conformance import BackendConformance, requires

__all__ = ["BackendConformance", "ConformanceError", "Recorder", "echo_completion", "requires"]
