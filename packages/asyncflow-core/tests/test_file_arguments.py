"""InputFile/OutputFile arguments reach a staging backend's TaskSpec, and only such a one."""

from __future__ import annotations

from dataclasses import replace

from loop_backend import LoopBackend

from asyncflow import InputFile, OutputFile, WorkflowEngine


class StagingBackend(LoopBackend):
    name = "staging"
    capabilities = replace(LoopBackend.capabilities, file_staging=True)


async def test_a_staging_backend_gets_every_file_argument_once(tmp_path: object) -> None:
    backend = StagingBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        raw, summary = InputFile("raw.csv"), OutputFile("out/summary.txt")

        @flow.executable_task
        def summarize(source: InputFile, extra: list[object], *, to: OutputFile) -> str:
            return "true"

        @flow.function_task
        def plain(x: int) -> int:
            return x

        await summarize(raw, [InputFile("a.txt"), {"k": raw}, 3], to=summary)
        await plain(1)
        specs = {spec.name: spec for spec in backend.specs}
        assert specs["summarize"].input_files == (raw, InputFile("a.txt"))
        assert specs["summarize"].output_files == (summary,)
        assert specs["plain"].input_files == specs["plain"].output_files == ()
    finally:
        await flow.shutdown()


async def test_other_backends_get_plain_paths_and_no_file_lists(tmp_path: object) -> None:
    backend = LoopBackend()
    flow = await WorkflowEngine.create(backend=backend, work_dir=tmp_path)
    try:
        @flow.function_task
        def name_of(path: InputFile) -> str:
            return str(path)

        assert await name_of(InputFile("raw.csv")) == "raw.csv"
        (spec,) = backend.specs
        assert spec.input_files == ()
    finally:
        await flow.shutdown()
