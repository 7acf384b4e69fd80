"""The ``asyncflow`` command (also ``python -m asyncflow``).

Each subcommand is one function taking the parsed arguments and returning an exit code,
registered by the :func:`subcommand` decorator with its arguments; its docstring's first line
is its summary in ``--help``. Adding one takes one function and one decorator line::

    @subcommand(arg("run_dir", help="the run's folder"), arg("--png", action="store_true"))
    def report(args: argparse.Namespace) -> int:
        \"\"\"Write an HTML report of a finished run.\"\"\"
        ...
        return OK

Exit codes, as dask and prefect users expect: 0 success, 1 the workflow failed, 2 a usage
or configuration error, 130 interrupted (Ctrl-C). A configuration error prints one message
naming the file, key or variable, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import inspect
import json
import runpy
import sys
import textwrap
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from asyncflow import __version__, _plugins, config
from asyncflow.errors import (
    BackendConflictError,
    ConfigError,
    PluginLoadError,
    UnknownBackendError,
)
from asyncflow.registry import BackendInfo

__all__ = ["main", "subcommand"]

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

# Errors that mean "fix your configuration or command line", reported without a traceback.
USER_ERRORS = (ConfigError, UnknownBackendError, BackendConflictError, PluginLoadError)

Handler = Callable[[argparse.Namespace], int]
Argument = tuple[tuple[str, ...], dict[str, Any]]

_SUBCOMMANDS: dict[str, tuple[Handler, tuple[Argument, ...], bool]] = {}


def arg(*flags: str, **options: Any) -> Argument:
    """One argument of a subcommand, as ``ArgumentParser.add_argument`` takes it."""
    return flags, options


def subcommand(*arguments: Argument, name: str | None = None,
               passthrough: bool = False) -> Callable[[Handler], Handler]:
    """Register a function as the subcommand ``name`` (by default the function's name).

    With ``passthrough``, the words after ``--`` are left for it in ``args.passthrough``.
    """
    def register(handler: Handler) -> Handler:
        _SUBCOMMANDS[name or handler.__name__.replace("_", "-")] = (handler, arguments,
                                                                    passthrough)
        return handler
    return register


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    # Words after "--" belong to the workflow script; split them off before argparse, which
    # would otherwise mix them up with our own options.
    passthrough: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(words)
    if args.handler is None:
        parser.print_help(sys.stderr)
        return USAGE
    if passthrough and not _SUBCOMMANDS[args.command][2]:
        parser.error(f"{args.command} takes no arguments after --")
    args.passthrough = passthrough
    try:
        code: int = args.handler(args)
    except USER_ERRORS as exc:
        return error(exc)
    except KeyboardInterrupt:
        return INTERRUPTED
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncflow", description="AsyncFlow: asyncio workflows on pluggable backends.",
        epilog="Run 'asyncflow COMMAND --help' for a command's options. Exit codes: 0 ok, "
               "1 the workflow failed, 2 usage or configuration error.")
    parser.add_argument("--version", action="version", version=f"asyncflow {__version__}")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (handler, arguments, _) in _SUBCOMMANDS.items():
        doc = textwrap.dedent(handler.__doc__ or "").strip()
        sub = commands.add_parser(name, help=doc.splitlines()[0] if doc else None,
                                  description=doc,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.set_defaults(handler=handler, command=name)
    return parser


def error(exc: BaseException | str) -> int:
    print(f"asyncflow: error: {exc}", file=sys.stderr)
    return USAGE


# -- the choice of backend and configuration, shared by `run` and `config` -----------------

SELECTION = (
    arg("-b", "--backend", metavar="NAME",
        help="the default backend for every engine that does not name one (a list: a,b)"),
    arg("-c", "--config", metavar="FILE",
        help="a configuration file, above every other file and the environment"),
    arg("-o", "--option", dest="options", metavar="KEY=VALUE", action="append", default=[],
        help="set one value (a TOML literal): n_workers=4 (an option of the default "
             "backend), backends.dask.n_workers=4, backend=dask; repeatable"),
)


def selection_layers(args: argparse.Namespace) -> list[config.Layer]:
    """The configuration layers ``--config``, ``--backend`` and ``-o`` make, lowest first."""
    layers: list[config.Layer] = []
    if args.config:
        layers += config.file_layers(args.config, why="--config")
    default = None
    if args.backend:
        names = [n.strip() for n in args.backend.split(",") if n.strip()]
        if not names:
            raise ConfigError(f"--backend {args.backend!r} names no backend")
        for name in names:
            try:
                _plugins.registry().info(name)
            except UnknownBackendError as exc:
                raise UnknownBackendError(f"--backend: {exc}") from None
        layers.append(config.Layer(f"command line --backend {args.backend}", {"backend": names}))
        default = names[0]
    if args.options:
        if default is None:
            with config.overriding(*layers):
                settings = config.load()
            try:
                default = settings.backend_names()[0]  # the built-in default counts
            except ConfigError:
                default = None  # then a bare option name is an error naming --backend
        layers += [config.option_layer(option, default) for option in args.options]
    return layers


# -- asyncflow backends --------------------------------------------------------------------


@subcommand(arg("--json", action="store_true", help="print JSON instead of a table"))
def backends(args: argparse.Namespace) -> int:
    """List the installed backends and whether each one loads.

    For each backend: its name and aliases, class, distribution and version, capabilities,
    and whether its class loads. One that does not shows the error (a missing dependency,
    say), and the exit code is then 1.
    """
    rows = [backend_row(info) for info in _plugins.registry()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, sys.stdout)
    return OK if all(row["loads"] for row in rows) else FAILED


def backend_row(info: BackendInfo) -> dict[str, Any]:
    """What ``asyncflow backends`` says about one registered backend."""
    row: dict[str, Any] = {"name": info.name, "aliases": list(info.aliases),
                           "class": info.target if isinstance(info.target, str) else None,
                           "distribution": info.distribution, "version": info.version,
                           "capabilities": [], "loads": False, "error": None}
    if info.error is not None:
        row["error"] = str(info.error)
        return row
    try:
        cls = info.load()
    except Exception as exc:  # report it; `asyncflow backends` is where users look for this
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["class"] = f"{cls.__module__}:{cls.__qualname__}"
    row["capabilities"] = [f.name for f in fields(cls.capabilities)
                           if getattr(cls.capabilities, f.name) is True]
    row["loads"] = True
    if info.distribution is None and cls.__module__.split(".")[0] == "asyncflow":
        row["distribution"], row["version"] = "asyncflow-core", __version__  # built in
    return row


COLUMNS = ("name", "aliases", "class", "distribution", "version", "loads", "capabilities")


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    """A table: rich's when ``out`` is a terminal and rich is installed, plain text otherwise."""
    cells = [[_cell(row, column) for column in COLUMNS] for row in rows]
    errors = [(row["name"], row["error"]) for row in rows if row["error"]]
    if out.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(*(c.upper() for c in COLUMNS))
            for line in cells:
                table.add_row(*line)
            console = Console(file=out)
            console.print(table)
            for name, message in errors:
                console.print(f"[red]{name}[/red]: {message}", highlight=False)
            return
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(COLUMNS)]
    for line in [[c.upper() for c in COLUMNS], *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths,
                                                                 strict=True)).rstrip(), file=out)
    for name, message in errors:
        print(f"\n{name}: {message}", file=out)


def _cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if column == "loads":
        return "yes" if value else "no (see below)"
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return str(value) if value else "-"


# -- asyncflow config ----------------------------------------------------------------------


@subcommand(arg("--json", action="store_true", help="print JSON instead of TOML"), *SELECTION,
            name="config")
def show_config(args: argparse.Namespace) -> int:
    """Print the effective configuration and where each value came from.

    Every source is read, lowest first: ~/.config/asyncflow/config.toml ($XDG_CONFIG_HOME),
    [tool.asyncflow] in pyproject.toml, ./asyncflow.toml, $ASYNCFLOW_CONFIG, ASYNCFLOW_*
    variables, then --config, --backend and -o as `asyncflow run` would apply them. The
    configured backends and their options are checked too: the exit code is 2 when
    WorkflowEngine.create() would refuse them.
    """
    from asyncflow._config import validate

    with config.overriding(*selection_layers(args)):
        settings = config.load()
    problems: list[str] = []
    try:
        names = settings.backend_names()
    except ConfigError as exc:
        names, problems = [], [str(exc)]
    try:
        settings.require_plugins()  # telemetry without asyncflow-otel
    except ConfigError as exc:
        problems.append(str(exc))
    hook = _plugins.plugin_manager().hook.asyncflow_check_settings
    arguments = {"settings": settings}
    for impl in hook.get_hookimpls():  # one at a time: each plugin's error is one problem
        try:
            impl.function(*[arguments[a] for a in impl.argnames])
        except (ConfigError, ImportError) as exc:
            problems.append(str(exc))
    registry = _plugins.registry()
    # A named entry ([backends.cpu] with kind = "concurrent") is one of an installed kind.
    kinds = {name: settings.backend_options(name).get("kind") or name
             for name in dict.fromkeys([*names, *settings.backends])}
    installed = {name: str(kind) in registry for name, kind in kinds.items()}
    for name, present in installed.items():
        try:
            if present or name in names:
                try:
                    canonical = registry.info(str(kinds[name])).name
                except UnknownBackendError as exc:
                    where = settings.source_of("backend") if name in names else "its options"
                    raise UnknownBackendError(f"backend {name!r} (from {where}): {exc}") from None
                options = dict(settings.backend_options(name))
                if kinds[name] != name:
                    options.pop("kind", None)
                validate(canonical, options, config.sources_in(settings, name))
        except (*USER_ERRORS, TypeError) as exc:
            problems.append(str(exc))
    if args.json:
        data = settings.as_dict()
        data["effective_backends"] = names
        data["installed"] = installed
        data["problems"] = problems
        json.dump(data, sys.stdout, indent=2, default=str)
        print()
    else:
        print("\n".join(render_settings(settings, names, installed)))
    for problem in problems:
        error(problem)
    return USAGE if problems else OK


def render_settings(settings: config.Settings, names: list[str],
                    installed: dict[str, bool]) -> Iterator[str]:
    """The settings as TOML, each value followed by a comment saying where it came from."""
    yield "# Files read, lowest precedence first:"
    for file in settings.files or ["(none)"]:
        yield f"#   {file}"
    if settings.backend:
        yield f"backend = {_toml(settings.backend)}  # {settings.source_of('backend')}"
    elif names:
        yield f"backend = {_toml(names)}  # {config.DEFAULT_SOURCE}"
    else:
        yield "# backend: none configured, and the default is not installed"
    for setting in ("progress", "journal", "resume", "dag"):
        if setting in settings.sources:  # shown once set: their defaults are "off"
            yield (f"{setting} = {_toml(getattr(settings, setting))}  "
                   f"# {settings.source_of(setting)}")
    telemetry = settings.telemetry
    if telemetry is False or telemetry == {}:
        word = "false" if telemetry is False else "true"
        yield f"telemetry = {word}  # {settings.source_of('telemetry')}"
    elif isinstance(telemetry, dict):  # a table: after the top-level keys, as TOML wants
        yield ""
        yield f"[telemetry]  # {settings.source_of('telemetry')}"
        for key, value in telemetry.items():
            yield f"{key} = {_toml(value)}  # {settings.source_of(f'telemetry.{key}')}"
    for name, options in settings.backends.items():
        note = "" if installed.get(name) else "  # not installed"
        yield ""
        yield f"[backends.{name}]{note}"
        for key, value in options.items():
            source = config.sources_in(settings, name).get(key, config.DEFAULT_SOURCE)
            yield f"{_bare(key)} = {_toml(value)}  # {source}"


def _toml(value: Any) -> str:
    """A TOML literal of a configuration value (what tomllib returned, or a CLI value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # TOML spells inf and nan as Python does
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_bare(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return json.dumps(str(value))


def _bare(key: str) -> str:
    simple = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if simple else json.dumps(key)


# -- asyncflow run -------------------------------------------------------------------------


OBSERVE = (
    arg("--no-progress", dest="progress", action="store_false",
        help="no live progress display (it shows only when stderr is a terminal anyway)"),
    arg("--journal", action="store_true",
        help="record every state change in <work_dir>/<run>/journal.sqlite (see report)"),
    arg("--resume", action="store_true",
        help="continue the latest run of this script: tasks it completed resolve to their "
             "recorded results instead of running again (implies --journal)"),
    arg("--resume-from", metavar="RUN", help="continue the run RUN (its uid) instead"),
    arg("--dag", metavar="FILE",
        help="write each engine's task graph to FILE at shutdown (.mmd or .md: Mermaid, "
             ".dot: Graphviz); with --backend noop it is the plan, nothing runs"),
)


def observe_layer(args: argparse.Namespace) -> config.Layer:
    """The configuration layer of ``run``'s progress, journal, resume and DAG options."""
    data: dict[str, Any] = {"progress": args.progress}
    if args.journal:
        data["journal"] = True
    if args.resume or args.resume_from:
        data["resume"] = args.resume_from or True
    if args.dag:
        data["dag"] = str(Path(args.dag).absolute())  # the script may change directory
    return config.Layer("command line", data)


@subcommand(
    arg("script", metavar="SCRIPT.py",
        help="the workflow script, run as __main__; words after -- are its arguments"),
    *SELECTION,
    *OBSERVE,
    passthrough=True,
)
def run(args: argparse.Namespace) -> int:
    """Run a workflow script with a backend chosen on the command line.

    --backend, --config and -o apply to every engine the script creates without naming a
    backend (WorkflowEngine.create() with no backend=). A backend the script passes
    explicitly, an instance or a name, wins; a warning says so. Words after -- become the
    script's sys.argv[1:].

    A live progress display shows on a terminal (--no-progress hides it); --journal records
    the run for `asyncflow report`, --resume continues a run that stopped, --dag writes the
    task graph.

    Examples:
      asyncflow run workflow.py --backend dask -o n_workers=4
      asyncflow run workflow.py --config cluster.toml -- --steps 10
      asyncflow run workflow.py --journal --resume
      asyncflow run workflow.py --backend noop --dag plan.mmd
      asyncflow run workflow.py -o telemetry=console   (with asyncflow-otel)
    """
    script = Path(args.script)
    if not script.is_file():
        return error(f"no such workflow script: {script}")
    layers = [*selection_layers(args), observe_layer(args)]
    with config.overriding(*layers):
        return run_script(script, args.passthrough)


def run_script(script: Path, script_args: list[str]) -> int:
    """Run ``script`` as ``python script args`` would, in this process; return the exit code."""
    path = str(script.resolve())
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *script_args]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        code = _top_level_await(path)
        if code is None:
            runpy.run_path(path, run_name="__main__")
        else:
            _run_awaiting(code, path)
    except SystemExit as exc:
        return _exit_code(exc)
    except USER_ERRORS as exc:
        return error(exc)
    except KeyboardInterrupt:
        print("asyncflow: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BaseException as exc:
        _print_traceback(exc, path)
        print(f"asyncflow: the workflow {script} failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return FAILED
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return OK


def _top_level_await(path: str) -> types.CodeType | None:
    """The script compiled as a coroutine when it awaits at top level (the form of notebook
    cells and of the docs' pages), else ``None``: an ordinary script runs as Python runs it."""
    source = Path(path).read_bytes()
    code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                   dont_inherit=True)
    return code if code.co_flags & inspect.CO_COROUTINE else None


def _run_awaiting(code: types.CodeType, path: str) -> None:
    """Run top-level-await code as ``__main__`` on a new event loop, as runpy runs a script."""
    module = types.ModuleType("__main__")
    module.__file__ = path
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        asyncio.run(eval(code, vars(module)))
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return OK
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return FAILED


def _print_traceback(exc: BaseException, script: str) -> None:
    """The traceback from the script's own frames on: runpy's and ours are noise."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__, file=sys.stderr)


# -- asyncflow report ----------------------------------------------------------------------


@subcommand(
    arg("run_dir", metavar="RUN_DIR",
        help="the run's folder, <work_dir>/<engine uid>, holding journal.sqlite"),
    arg("-o", "--output", metavar="FILE", help="the HTML file (default: RUN_DIR/report.html)"),
    arg("--png", metavar="FILE", help="also draw the timeline as a PNG (needs matplotlib)"),
    arg("--session", type=int, metavar="N",
        help="which start of a resumed run to show (default: the latest)"),
)
def report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of a run from its journal.

    The page needs no network: a timeline of every task and block (grouped by block and
    backend, colored by outcome, details on hover), counts by backend and state, durations
    per task, and the failures with their errors. Runs write a journal when created with
    journal=True, or under `asyncflow run --journal`.

    Examples:
      asyncflow report asyncflow.session.1a2b3c4d
      asyncflow report runs/campaign -o campaign.html --png campaign.png
    """
    from asyncflow.report import write_report

    try:
        path = write_report(args.run_dir, args.output, args.png, args.session)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        return error(exc)
    print(path)
    if args.png:
        print(args.png)
    return OK
