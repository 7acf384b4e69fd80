"""Every development task is a nox session; CI (.ci/run) calls nox and nothing else.

    nox                      the default sessions: lint, typecheck, tests, eager_tasks,
                             integration, example_plugin, docs, build, chaos_ci, hpc
    nox -s tests             each package's tests, one virtualenv per package
    nox -s "tests(package='asyncflow-dask')"
    nox -s hpc               RADICAL-Pilot and Dask on a two-node Slurm cluster it starts
    nox -s bench             the benchmark (not in the default run)
    nox -s chaos             the chaos suite at full size, and the table in docs/reliability.md
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import nox
import nox.command

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "eager_tasks", "integration",
                        "example_plugin", "docs", "build", "chaos_ci", "hpc"]
# A machine without a second interpreter reports eager_tasks as skipped instead of failing.
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).parent
PACKAGES = ["asyncflow-core", "asyncflow-concurrent", "asyncflow-dask", "asyncflow-radical",
            "asyncflow-otel"]
# What a package's tests run on besides itself (the telemetry tests need a real backend).
TEST_NEEDS = {"asyncflow-otel": ("asyncflow-concurrent",)}
# The overhead scripts of bench --backends, and the package each one measures.
BENCH_SCRIPTS = {"dask_overhead.py": "asyncflow-dask", "radical_overhead.py": "asyncflow-radical",
                 "telemetry_overhead.py": "asyncflow-otel"}
CORE = "packages/asyncflow-core[progress,report,testing]"
TEST_GROUP = "packages/asyncflow-core/pyproject.toml:test"  # core's test dependencies (PEP 735)


def install_packages(session: nox.Session, *packages: str) -> None:
    """Install core (with its extras and its test dependency group) and the given packages,
    editable."""
    args = ["--group", TEST_GROUP, "-e", CORE]
    for package in packages:
        if package != "asyncflow-core":
            args += ["-e", f"packages/{package}"]
    session.install(*args)


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests against its installed distribution."""
    install_packages(session, package, *TEST_NEEDS.get(package, ()))
    runner = ROOT / "packages" / package / "tests" / "run.sh"
    if runner.exists():  # a package whose tests need a prepared environment (RADICAL-Pilot)
        session.run("bash", str(runner), *session.posargs, external=True)
    else:
        session.run("pytest", f"packages/{package}/tests", *session.posargs)


def python(version: str) -> str:
    """pyenv's Python ``version``, which machines here have beside the default 3.11 (its PATH
    shim only works once selected), else whatever nox finds for ``version``."""
    installed = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    return str(installed[-1]) if installed else version


@nox.session(python=[python("3.12"), python("3.13")])
def eager_tasks(session: nox.Session) -> None:
    """Core and concurrent tests on Pythons 3.12 and 3.13 (``tests`` runs them on 3.11), where
    the concurrent backend starts its driver tasks eagerly, inside submit."""
    install_packages(session, "asyncflow-concurrent")
    for package in ("asyncflow-core", "asyncflow-concurrent"):
        session.run("pytest", f"packages/{package}/tests", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Cross-package tests: the examples end to end, the CLI, configuration files."""
    install_packages(session, *PACKAGES[:3])
    session.install("nbclient", "ipykernel")  # test_jupyter runs a notebook in a real kernel
    session.run("pytest", "tests", *session.posargs)


@nox.session(reuse_venv=False)
def example_plugin(session: nox.Session) -> None:
    """Build docs/examples/asyncflow-inline, install its wheel beside core as a user would
    (not editable, not from the source tree), run its conformance test, then the workflow
    that selects the backend by name from the example's asyncflow.toml."""
    example = ROOT / "docs" / "examples" / "asyncflow-inline"
    dist = Path(session.create_tmp()) / "example-dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.install("build[uv]")
    session.run("python", "-m", "build", "--installer", "uv", "--wheel", "--outdir", str(dist),
                str(example))
    (wheel,) = dist.glob("asyncflow_inline-*.whl")
    session.install(f"{ROOT / 'packages' / 'asyncflow-core'}[testing]", str(wheel))
    session.chdir(example)
    session.run("python", "-c", "import asyncflow_inline as m; assert 'site-packages' in "
                "m.__file__, f'imported from {m.__file__}, not the installed wheel'")
    session.run("asyncflow", "backends")
    session.run("pytest", "tests", *session.posargs)
    for command in (["asyncflow", "run", "workflow.py"], ["python", "workflow.py"]):
        output = session.run(*command, silent=True) or ""
        print(output, end="")
        if "ran on 'inline'" not in output:
            session.error(f"{' '.join(command)} did not run on the inline backend")


WORKFLOW = """\
import asyncio

from asyncflow import WorkflowEngine


async def main() -> None:
    async with WorkflowEngine.create() as flow:  # the backend asyncflow.toml names
        @flow.function_task
        async def square(x: int) -> int:
            return x * x

        total = sum(await asyncio.gather(*(square(i) for i in range(10))))
        print(f"total={total} on {flow.default_backend!r}")


asyncio.run(main())
"""


@nox.session(reuse_venv=False)
def build(session: nox.Session) -> None:
    """Build every package's sdist and wheel and check them (twine), then install core and
    radical from those wheels into this fresh virtualenv as a user would (not editable), with
    concurrent, and run a workflow whose backend asyncflow.toml names (concurrent: radical
    would need a pilot; its plugin still loads and registers)."""
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.install("twine")
    for package in PACKAGES:
        session.run("uv", "build", "--quiet", "--out-dir", str(dist), f"packages/{package}",
                    external=True)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.glob("asyncflow*")))
    wheels = {p.name.split("-")[0]: p for p in dist.glob("*.whl")}
    session.install(*(str(wheels[f"asyncflow_{name}"])
                      for name in ("core", "radical", "concurrent")))
    run = Path(session.create_tmp()) / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    (run / "asyncflow.toml").write_text('backend = "concurrent"\n')
    (run / "workflow.py").write_text(WORKFLOW)
    session.chdir(run)
    session.run("python", "-c", "import asyncflow, asyncflow_radical as r; assert "
                "'site-packages' in asyncflow.__file__ and 'site-packages' in r.__file__; "
                "asyncflow.registry().get('radical')")
    output = session.run("asyncflow", "run", "workflow.py", silent=True) or ""
    print(output, end="")
    if "total=285 on 'concurrent'" not in output:
        session.error("the workflow did not run on the backend asyncflow.toml names")


@contextlib.contextmanager
def slurm_cluster(session: nox.Session) -> Iterator[dict[str, str]]:
    """Start scripts/slurm-cluster.sh's two-node cluster (installing slurm-wlm and munge if
    missing; needs root), yield the tests' environment, and stop it however the tests end."""
    cluster = str(ROOT / "scripts" / "slurm-cluster.sh")
    session.run("bash", cluster, "start", external=True)
    try:
        yield {"SLURM_CONF": os.path.join(os.environ.get("ASYNCFLOW_SLURM_DIR",
                                                         "/tmp/asyncflow-slurm"), "slurm.conf"),
               "ASYNCFLOW_SLURM_TESTS": "1"}
    finally:
        session.run("bash", cluster, "stop", external=True)


def radical_pytest(session: nox.Session, env: dict[str, str], *args: str) -> None:
    """pytest inside contained.sh, which ends every RADICAL-Pilot process the tests leave.

    On a failure contained.sh prints the pilots' logs after pytest's summary; the failed tests
    are printed again below them, so that the end of the log says what failed.
    """
    results = Path(session.create_tmp()) / "radical-results.xml"
    results.unlink(missing_ok=True)
    try:
        session.run("bash", "packages/asyncflow-radical/tests/contained.sh", "-m", "pytest",
                    "-p", "no:cacheprovider", f"--junitxml={results}", *args,
                    *session.posargs, env=env, external=True)
    except nox.command.CommandFailed:
        print_failures(results)
        raise


def print_failures(results: Path) -> None:
    import xml.etree.ElementTree as ET

    if not results.exists():
        print(f"no {results.name}: pytest did not get as far as reporting")
        return
    for case in ET.parse(results).iter("testcase"):
        for problem in (*case.iter("failure"), *case.iter("error")):
            print(f"FAILED {case.get('classname')}::{case.get('name')}: "
                  f"{(problem.get('message') or '')[:300]}")
            print("\n".join((problem.text or "").splitlines()[-25:]))


@nox.session
def hpc(session: nox.Session) -> None:
    """The HPC path on a real batch system: Dask's worker jobs (dask-jobqueue) and
    RADICAL-Pilot's pilots on a two-node Slurm cluster on this machine."""
    install_packages(session, "asyncflow-radical")
    session.install("-e", "packages/asyncflow-dask[jobqueue]")
    with slurm_cluster(session) as env:
        session.run("pytest", "packages/asyncflow-dask/tests/slurm", *session.posargs, env=env)
        radical_pytest(session, env, "packages/asyncflow-radical/tests/slurm")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff; core's layers (import-linter, [tool.importlinter] in pyproject.toml); no runtime
    import cycle in core (tools/import_cycles.py)."""
    session.install("ruff", "import-linter", "-e", "packages/asyncflow-core")
    session.run("ruff", "check", "packages", "tests", "benchmarks", "examples", "tools",
                "chaos", "noxfile.py")
    session.run("lint-imports")
    session.run("python", "tools/import_cycles.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("mypy")
    install_packages(session, *PACKAGES)
    session.run("mypy", *[f"packages/{p}/src" for p in PACKAGES])


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    session.install("mkdocs-material", "mkdocstrings[python]")
    install_packages(session)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(session.create_tmp() + "/site"))


BENCH_PEERS = ["radical-asyncflow==0.6.0", "parsl", "dask[distributed]"]


@nox.session
def bench(session: nox.Session) -> None:
    """The engine benchmark (benchmarks/run.py; options after ``--``, e.g. ``--reps 5``).

    ``-- --backends`` adds benchmarks/concurrent_overhead.py, dask_overhead.py,
    radical_overhead.py and telemetry_overhead.py (those present).
    ``-- --peers`` also runs radical.asyncflow 0.6.0, Parsl and Dask side by side. They live
    in a separate environment, .nox/bench-peers: upstream ``radical.asyncflow`` has the
    import name of this project's alias, so the two cannot share one.
    """
    args = list(session.posargs)
    packages = ["asyncflow-concurrent"]
    if "--backends" in args:  # the backend packages' own overhead scripts, those present
        packages += [package for script, package in BENCH_SCRIPTS.items()
                     if (ROOT / "benchmarks" / script).exists()]
    install_packages(session, *packages)
    if "--profile" in args:
        session.install("pyinstrument")
    if "--peers" in args and "--peer-python" not in args:
        peers = ROOT / ".nox" / "bench-peers"
        python = peers / "bin" / "python"
        if not python.exists():
            session.run("python", "-m", "venv", str(peers))
        session.run(str(python), "-m", "pip", "install", "--quiet", *BENCH_PEERS,
                    external=True)
        args += ["--peer-python", str(python)]
    session.run("python", "benchmarks/run.py", *args)



# The graph property tests of each backend, run again with more and larger graphs.
GRAPH_TESTS = ["packages/asyncflow-core/tests/test_graph_properties_noop.py",
               "packages/asyncflow-concurrent/tests/test_graph_properties.py",
               "packages/asyncflow-dask/tests/test_graph_properties_dask.py"]


def chaos_suite(session: nox.Session, *args: str, write: bool = False) -> None:
    """Run chaos/ (the scenarios of docs/reliability.md), then print their figures as the
    table, failed scenarios too (``write``: into docs/reliability.md as well)."""
    figures = Path(session.create_tmp()) / "figures.jsonl"
    try:
        session.run("pytest", "chaos", *args, *session.posargs,
                    env={"ASYNCFLOW_CHAOS_FIGURES": str(figures)})
    finally:
        session.run("python", "chaos/render.py", str(figures), *(["--write"] if write else []))


@nox.session
def chaos(session: nox.Session) -> None:
    """The graph properties with the ``chaos`` Hypothesis profile, then the chaos suite at
    full size; writes the table of docs/reliability.md from its figures."""
    install_packages(session, *PACKAGES[:3])
    session.install("psutil")
    for tests in GRAPH_TESTS:  # one run each: every package has its own conftest
        session.run("pytest", tests, *session.posargs, env={"ASYNCFLOW_GRAPHS": "chaos"})
    chaos_suite(session, write=True)


@nox.session
def chaos_ci(session: nox.Session) -> None:
    """The chaos suite's short form, for CI: the same scenarios, smaller; prints the table."""
    install_packages(session, *PACKAGES[:3])
    session.install("psutil")
    chaos_suite(session, "--short")
