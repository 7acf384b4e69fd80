"""The built-in noop backend against the backend contract.

noop completes every task at once without running it, so the tests about results, errors
and running tasks are skipped (``executes = False``); the rest of the contract holds.
"""

from asyncflow.testing import BackendConformance


class TestNoopConformance(BackendConformance):
    backend_name = "noop"
    executes = False
