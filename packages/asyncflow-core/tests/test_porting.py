"""Issue 12: what RADICAL AsyncFlow scripts need from core, through ``radical.asyncflow``.

The logging helpers, upstream's backend construction (a positional dict of options and
``name=``), two named backends of one kind, the exceptions ported code catches,
``create(implicit_data=...)`` and the module paths of upstream's API reference.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import radical.asyncflow as ra
import radical.asyncflow.backends
import radical.asyncflow.data
import radical.asyncflow.logging as ralog
from loop_backend import LoopBackend
from radical.asyncflow import NoopExecutionBackend, WorkflowEngine

import asyncflow
import asyncflow.data
import asyncflow.log

pytestmark = pytest.mark.timeout(30)

# -- point 1: logging helpers --------------------------------------------------------------


@pytest.fixture
def clean_logger() -> Iterator[logging.Logger]:
    """The ``asyncflow`` logger as the test found it, restored afterwards."""
    logger = logging.getLogger("asyncflow")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


def test_the_upstream_module_is_the_new_one() -> None:
    assert ralog.__all__ == asyncflow.log.__all__
    for name in ralog.__all__:
        assert getattr(ralog, name) is getattr(asyncflow.log, name)


def test_calling_init_twice_does_not_duplicate_handlers(clean_logger: logging.Logger,
                                                        tmp_path: Path) -> None:
    before = len(clean_logger.handlers)
    ralog.init_default_logger(logging.DEBUG, output_file=tmp_path / "run.log")
    first = len(clean_logger.handlers)
    logger = ralog.init_default_logger(logging.DEBUG, output_file=tmp_path / "run.log")
    assert logger is clean_logger
    assert first == len(clean_logger.handlers) == before + 2
    ralog.get_logger("my.flow").info("one line")
    assert (tmp_path / "run.log").read_text().count("one line") == 1


def test_the_file_has_its_own_level(clean_logger: logging.Logger, tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    ralog.init_default_logger(log_level="WARNING", output_file=log_file,
                              file_log_level="DEBUG", use_colors=False, show_details=True,
                              style="classic")
    ralog.get_logger(__name__).debug("detail for the file")
    text = log_file.read_text()
    assert "detail for the file" in text and "test_porting.py:" in text
    assert clean_logger.level == logging.DEBUG


def test_structured_logging_writes_json_lines(clean_logger: logging.Logger,
                                              tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    ralog.init_default_logger("INFO", structured_logging=True, structured_file=target)
    log = ralog.get_structured_logger("stage", run="r1")
    log.info("staged", uid="task.000001", size=3)
    entry = json.loads(target.read_text().splitlines()[-1])
    assert entry["logger"] == "asyncflow.stage" and entry["level"] == "INFO"
    assert entry["message"].startswith("staged")
    assert entry["fields"] == {"run": "r1", "uid": "task.000001", "size": 3}


def test_clear_handlers_removes_foreign_handlers(clean_logger: logging.Logger) -> None:
    foreign = logging.NullHandler()
    clean_logger.addHandler(foreign)
    ralog.init_default_logger(clear_handlers=True)
    assert foreign not in clean_logger.handlers
    assert len(clean_logger.handlers) == 1


def test_logger_names_stay_under_asyncflow() -> None:
    assert ralog.get_logger().name == "asyncflow"
    assert ralog.get_logger("asyncflow.config").name == "asyncflow.config"
    assert ralog.get_logger("my.flow").name == "asyncflow.my.flow"


@pytest.mark.parametrize(("options", "message"), [
    ({"style": "fancy"}, "style='fancy' is not one of"),
    ({"log_level": "LOUD"}, "log_level='LOUD' is not a logging level"),
])
def test_bad_logging_options_are_named(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ralog.init_default_logger(**options)  # type: ignore[arg-type]


def test_the_package_modules_still_see_the_standard_logging() -> None:
    import asyncflow._kernel.engine

    assert asyncflow._kernel.engine.logging is logging


# -- point 2: upstream's backend construction ----------------------------------------------


def test_noop_takes_a_routing_name_and_a_dict() -> None:
    assert NoopExecutionBackend(name="ai").name == "ai"
    assert NoopExecutionBackend({}).name == "noop"
    assert NoopExecutionBackend.name == "noop", "the class keeps its registered name"


def test_a_dict_key_that_is_not_an_option_fails_like_a_keyword() -> None:
    with pytest.raises(ra.BackendOptionError) as from_dict:
        NoopExecutionBackend({"nodes": 1})
    with pytest.raises(ra.BackendOptionError) as from_keyword:
        NoopExecutionBackend(nodes=1)  # type: ignore[call-arg]
    assert str(from_dict.value) == str(from_keyword.value) == (
        "backend 'noop' (NoopExecutionBackend) does not accept the option 'nodes'; it "
        "accepts: name")
    assert isinstance(from_dict.value, TypeError)


def test_a_bad_routing_name_is_refused() -> None:
    with pytest.raises(TypeError, match="name= is the routing name"):
        NoopExecutionBackend(name="")


async def test_two_named_backends_of_one_class_serve_one_engine() -> None:
    ai, hpc = LoopBackend(name="ai"), LoopBackend(name="hpc")
    flow = await WorkflowEngine.create(backend=[ai, hpc])
    try:
        assert flow.backends == {"ai": ai, "hpc": hpc} and flow.backend is ai

        @flow.function_task(backend="hpc")
        async def simulate() -> int:
            return 1

        @flow.function_task
        async def infer(x: int) -> int:
            return x + 1

        future = simulate()
        assert await infer(future) == 2
        assert [spec.name for batch in hpc.batches for spec in batch] == ["simulate"]
        assert [spec.name for batch in ai.batches for spec in batch] == ["infer"]
    finally:
        await flow.shutdown()


async def test_two_named_entries_of_one_kind_in_configuration(tmp_path: Path) -> None:
    config = tmp_path / "asyncflow.toml"
    config.write_text('backend = ["ai", "sim"]\n'
                      '[backends.ai]\nkind = "noop"\n'
                      '[backends.sim]\nkind = "dry_run"\n')
    flow = await WorkflowEngine.create(config=config)
    try:
        assert list(flow.backends) == ["ai", "sim"]
        assert all(type(b) is NoopExecutionBackend for b in flow.backends.values())
        assert [b.name for b in flow.backends.values()] == ["ai", "sim"]

        @flow.function_task(backend="sim")
        async def simulate() -> int:
            return 1

        assert await simulate() == "Dummy Output"
    finally:
        await flow.shutdown()


async def test_a_named_entry_checks_its_options_and_kind(tmp_path: Path) -> None:
    config = tmp_path / "asyncflow.toml"
    config.write_text('backend = "ai"\n[backends.ai]\nkind = "noop"\nnodes = 2\n')
    with pytest.raises(ra.BackendOptionError, match=re.escape(f"'nodes' from {config}")):
        await WorkflowEngine.create(config=config)
    config.write_text('backend = "ai"\n[backends.ai]\nkind = 3\n')
    with pytest.raises(ra.ConfigError, match=r"backends\.ai\.kind must be the name of an "
                                             r"installed backend, not 3"):
        await WorkflowEngine.create(config=config)
    config.write_text('backend = "ai"\n[backends.ai]\nkind = "nope"\n')
    with pytest.raises(ra.UnknownBackendError, match="nope"):
        await WorkflowEngine.create(config=config)


# -- point 4: exceptions and create() -------------------------------------------------------


async def test_a_task_routed_to_an_unknown_backend_fails_with_a_key_error(
        noop_flow: WorkflowEngine) -> None:
    @noop_flow.function_task(backend="gpu")
    async def lost() -> int:
        return 1

    @noop_flow.function_task
    async def fine() -> int:
        return 2

    with pytest.raises(KeyError) as raised:
        await lost()
    assert isinstance(raised.value, ra.UnknownBackendError)
    assert str(raised.value).startswith("task 'lost' (task.")  # not KeyError's quoted repr
    assert "asks for backend 'gpu', but this engine has 'noop'" in str(raised.value)
    assert await fine() == "Dummy Output", "the engine goes on"


async def test_create_accepts_implicit_data() -> None:
    for implicit_data in (True, False):
        flow = await WorkflowEngine.create(NoopExecutionBackend(), implicit_data=implicit_data)
        try:
            @flow.function_task
            async def task() -> int:
                return 1

            assert await task() == "Dummy Output"
        finally:
            await flow.shutdown()


def test_the_api_reference_modules_import() -> None:
    assert radical.asyncflow.data.InputFile is asyncflow.data.InputFile
    assert radical.asyncflow.data.OutputFile is asyncflow.data.OutputFile
    from radical.asyncflow.backends import ExecutionBackend, NoopExecutionBackend

    assert NoopExecutionBackend is asyncflow.registry().get("noop")
    assert ExecutionBackend is asyncflow.ExecutionBackend
    assert "NoopExecutionBackend" in dir(radical.asyncflow.backends)
