"""Every development task is a nox session; CI (.ci/run) calls nox and nothing else.

    nox                      the default sessions: lint, typecheck, tests, eager_tasks,
                             integration, example_plugin, docs, hpc
    nox -s tests             each package's tests, one virtualenv per package
    nox -s "tests(package='asyncflow-dask')"
    nox -s hpc               RADICAL-Pilot and Dask on a two-node Slurm cluster it starts
    nox -s bench             the benchmark (not in the default run)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "eager_tasks", "integration",
                        "example_plugin", "docs", "hpc"]
# A machine without a second interpreter reports eager_tasks as skipped instead of failing.
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).parent
PACKAGES = ["asyncflow-core", "asyncflow-concurrent", "asyncflow-dask", "asyncflow-radical"]
CORE = "packages/asyncflow-core[testing]"


def install_packages(session: nox.Session, *packages: str) -> None:
    """Install core (with its testing extra) and the given packages, editable."""
    args = ["-e", CORE]
    for package in packages:
        if package != "asyncflow-core":
            args += ["-e", f"packages/{package}"]
    session.install(*args)


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests against its installed distribution."""
    install_packages(session, package)
    runner = ROOT / "packages" / package / "tests" / "run.sh"
    if runner.exists():  # a package whose tests need a prepared environment (RADICAL-Pilot)
        session.run("bash", str(runner), *session.posargs, external=True)
    else:
        session.run("pytest", f"packages/{package}/tests", *session.posargs)


def python_312() -> str:
    """A Python 3.12 for eager_tasks: pyenv's, which machines here have beside the default
    3.11 (its PATH shim only works once selected), else whatever nox finds for "3.12"."""
    installed = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    return str(installed[-1]) if installed else "3.12"


@nox.session(python=python_312())
def eager_tasks(session: nox.Session) -> None:
    """Core and concurrent tests on Python 3.12, where the concurrent backend starts its
    driver tasks eagerly, inside submit (3.11, which the other sessions use, cannot)."""
    install_packages(session, "asyncflow-concurrent")
    for package in ("asyncflow-core", "asyncflow-concurrent"):
        session.run("pytest", f"packages/{package}/tests", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Cross-package tests: the examples end to end, the CLI, configuration files."""
    install_packages(session, *PACKAGES[:3])
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


@nox.session
def hpc(session: nox.Session) -> None:
    """The HPC path on a real batch system: scripts/slurm-cluster.sh starts a two-node Slurm
    cluster on this machine (installing slurm-wlm and munge if missing; needs root), then
    Dask's worker jobs (dask-jobqueue) and RADICAL-Pilot's pilots run on it; the cluster is
    stopped however the tests end."""
    install_packages(session, "asyncflow-radical")
    session.install("-e", "packages/asyncflow-dask[jobqueue]")
    cluster = str(ROOT / "scripts" / "slurm-cluster.sh")
    env = {"SLURM_CONF": os.path.join(os.environ.get("ASYNCFLOW_SLURM_DIR",
                                                     "/tmp/asyncflow-slurm"), "slurm.conf"),
           "ASYNCFLOW_SLURM_TESTS": "1"}
    session.run("bash", cluster, "start", external=True)
    try:
        session.run("pytest", "packages/asyncflow-dask/tests/slurm", *session.posargs, env=env)
        session.run("bash", "packages/asyncflow-radical/tests/contained.sh", "-m", "pytest",
                    "-p", "no:cacheprovider", "packages/asyncflow-radical/tests/slurm",
                    *session.posargs, env=env, external=True)
    finally:
        session.run("bash", cluster, "stop", external=True)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "packages", "tests", "benchmarks", "examples", "noxfile.py")


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

    ``-- --backends`` adds benchmarks/concurrent_overhead.py, dask_overhead.py and
    radical_overhead.py (those present).
    ``-- --peers`` also runs radical.asyncflow 0.6.0, Parsl and Dask side by side. They live
    in a separate environment, .nox/bench-peers: upstream ``radical.asyncflow`` has the
    import name of this project's alias, so the two cannot share one.
    """
    args = list(session.posargs)
    packages = ["asyncflow-concurrent"]
    if "--backends" in args:  # the backend packages' own overhead scripts, those present
        packages += [f"asyncflow-{name}" for name in ("dask", "radical")
                     if (ROOT / "benchmarks" / f"{name}_overhead.py").exists()]
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

