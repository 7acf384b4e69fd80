"""The backend contract (asyncflow.testing) in each of the three modes."""

from asyncflow.testing import BackendConformance, echo_completion

# Named as a configuration file names it: the option goes through the registry's build().
PROMPT = {"prompt": "asyncflow.testing:echo_completion"}


class TestLoopMode(BackendConformance):
    backend_name = "concurrent"
    backend_options = PROMPT
    prompt_completion = echo_completion


class TestThreadMode(BackendConformance):
    backend_name = "concurrent"
    backend_options = {"executor": "threads", "max_workers": 4, **PROMPT}
    prompt_completion = echo_completion


class TestProcessMode(BackendConformance):
    backend_name = "concurrent"
    backend_options = {"executor": "processes", "max_workers": 2, **PROMPT}
    prompt_completion = echo_completion

