"""The conformance kit for backend authors: the backend contract as a pytest class.

Subclass :class:`BackendConformance` in your plugin's tests and every part of the contract
the backend's capabilities cover is tested::

    from asyncflow.testing import BackendConformance

    class TestInlineConformance(BackendConformance):
        backend_name = "inline"

It needs ``pip install "asyncflow-core[testing]"`` and nothing in ``conftest.py``.
"""

from asyncflow.testing._bodies import ConformanceError
from asyncflow.testing.conformance import BackendConformance, requires

__all__ = ["BackendConformance", "ConformanceError", "requires"]
