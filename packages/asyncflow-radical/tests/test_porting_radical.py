"""Issue 12: RADICAL AsyncFlow's way of building the RADICAL-Pilot backend (no pilot needed)."""

from __future__ import annotations

import pytest
import radical.asyncflow as ra
from radical.asyncflow import RadicalExecutionBackend


def test_upstreams_resources_dict_describes_the_pilot() -> None:
    backend = RadicalExecutionBackend({"resource": "local.localhost", "nodes": 1}, name="hpc")
    assert backend.name == "hpc"
    assert backend.pilot_description == {"resource": "local.localhost", "nodes": 1,
                                         "runtime": 60, "exit_on_error": False}


def test_the_dict_and_keywords_combine_but_may_not_repeat() -> None:
    backend = RadicalExecutionBackend({"cores": 4}, runtime=10)
    assert (backend.pilot_description["cores"], backend.pilot_description["runtime"]) == (4, 10)
    with pytest.raises(ra.BackendOptionError, match=r"\['cores'\] given both in the options "
                                                    r"dict and as keywords"):
        RadicalExecutionBackend({"cores": 4}, cores=8)


def test_a_key_that_is_not_an_option_is_named() -> None:
    # upstream's default resources held exit_on_error, which this backend always sets False
    with pytest.raises(ra.BackendOptionError, match="does not accept the option "
                                                    "'exit_on_error'; it accepts: resource,"):
        RadicalExecutionBackend({"resource": "local.localhost", "exit_on_error": True})
