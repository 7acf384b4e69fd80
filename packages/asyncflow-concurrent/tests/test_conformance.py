"""The backend contract (asyncflow.testing) in each of the three modes."""

from asyncflow.testing import BackendConformance


class TestLoopMode(BackendConformance):
    backend_name = "concurrent"


class TestThreadMode(BackendConformance):
    backend_name = "concurrent"
    backend_options = {"executor": "threads", "max_workers": 4}


class TestProcessMode(BackendConformance):
    backend_name = "concurrent"
    backend_options = {"executor": "processes", "max_workers": 2}
