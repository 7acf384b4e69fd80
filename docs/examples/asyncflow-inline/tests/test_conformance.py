from asyncflow.testing import BackendConformance


class TestInlineConformance(BackendConformance):
    backend_name = "inline"
