"""Configuration: which backend runs tasks by default, and each backend's options.

Sources, later ones winning (each is optional)::

    built-in defaults
    < $XDG_CONFIG_HOME/asyncflow/config.toml   (~/.config/asyncflow/config.toml)
    < [tool.asyncflow] in the project's pyproject.toml   (the nearest one above the cwd)
    < asyncflow.toml in the working directory
    < the file named by $ASYNCFLOW_CONFIG
    < environment variables   ASYNCFLOW_BACKEND=dask   ASYNCFLOW_BACKENDS__DASK__N_WORKERS=4
                              ASYNCFLOW_TELEMETRY=off   ASYNCFLOW_TELEMETRY__EXPORTER=otlp
    < the command line   asyncflow run --config FILE --backend NAME -o key=value
    < WorkflowEngine.create(config="path.toml")
    < WorkflowEngine.create(backend=..., **options)

Every file has the same schema::

    backend = "dask"            # or a list: every one is started, the first is the default
    [backends.dask]             # keyword options of that backend's constructor
    n_workers = 2

``backend`` is replaced as a whole by a later source; the option tables are merged key by key.
Every value remembers where it came from (:attr:`Settings.sources`), which ``asyncflow
config`` prints.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncflow import _plugins
from asyncflow.errors import ConfigError

__all__ = ["Layer", "Settings", "load", "overriding", "parse_value"]

DEFAULT_BACKEND = "concurrent"  # with nothing configured, when asyncflow-concurrent is installed
FILE_NAME = "asyncflow.toml"
ENV_FILE = "ASYNCFLOW_CONFIG"
ENV_BACKEND = "ASYNCFLOW_BACKEND"
ENV_OPTIONS = "ASYNCFLOW_BACKENDS__"  # ASYNCFLOW_BACKENDS__<BACKEND>__<OPTION>
ENV_TELEMETRY = "ASYNCFLOW_TELEMETRY"  # and ASYNCFLOW_TELEMETRY__<KEY>
DEFAULT_SOURCE = "built-in default"

# The schema's top-level keys and what each one holds (for messages). Add a key here and in
# _check() to make it configurable.
KEYS = {
    "backend": "a backend name or a list of names",
    "backends": "tables of backend options, [backends.<name>]",
    "progress": "true or false: a live progress display on a terminal",
    "journal": "true or false: record every state change in <work_dir>/<run>/journal.sqlite",
    "resume": "true (the latest run of the script) or a run's uid: skip what it completed",
    "dag": "a file to write each engine's task graph to (.mmd, .md or .dot)",
    "telemetry": "true, false, an exporter name, or a table [telemetry] (asyncflow-otel)",
}

# The keys of the [telemetry] table. The asyncflow-otel plugin reads them (in its
# asyncflow_engine_configured hook); their shape is checked here, with the file at hand.
TELEMETRY_KEYS = {
    "exporter": "\"console\", \"otlp\" (or another OpenTelemetry exporter's name), or "
                "\"module:callable\" returning a SpanExporter",
    "checkpoint_path": "a file that receives the telemetry summary as JSON lines",
    "checkpoint_interval": "seconds between checkpoints (a positive number)",
}

# Keys that a plugin reads rather than the core: the plugin's entry-point name and its
# distribution, for the error when it is missing.
PLUGIN_KEYS = {"telemetry": ("otel", "asyncflow-otel")}

_WORDS = {"on": True, "yes": True, "true": True, "1": True,
          "off": False, "no": False, "false": False, "0": False}


@dataclass(frozen=True)
class Layer:
    """One source of configuration: its data (the file schema) and where it came from."""

    source: str
    """Shown next to every value it sets, e.g. a file path or ``environment variable X``."""
    data: Mapping[str, Any]
    file: str | None = None
    """The file it was read from, if any."""


@dataclass
class Settings:
    """The effective configuration, with where each value came from."""

    backend: list[str] = field(default_factory=list)
    """The configured backends, the default first; empty when none is configured."""
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options per backend name (keyword arguments of its constructor)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Where each value came from, by dotted key: ``backend``, ``backends.dask.n_workers``."""
    files: list[str] = field(default_factory=list)
    """The configuration files that were read, lowest precedence first."""
    progress: bool = False
    """Show a live progress display when stderr is a terminal."""
    journal: bool = False
    """Write a run journal."""
    resume: bool | str = False
    """Continue an earlier run (``True``: the latest of this script; a string: that run)."""
    dag: str | None = None
    """Where to write each engine's task graph when it shuts down."""
    telemetry: dict[str, Any] | bool | None = None
    """OpenTelemetry for each engine (asyncflow-otel): ``None`` when not configured (the
    plugin's default: the application's global SDK providers, if any), ``False`` for off, or
    the ``[telemetry]`` table's keys when on (``{}`` for ``telemetry = true``)."""

    def backend_names(self, dry_run: bool = False) -> list[str]:
        """The backends to start, the default first; the built-in default when none is set."""
        if self.backend:
            return list(self.backend)
        if DEFAULT_BACKEND not in _plugins.registry():
            if dry_run:
                return ["noop"]
            raise ConfigError(
                f"no backend is configured and {DEFAULT_BACKEND!r}, the default, is not "
                "installed. Install it (pip install asyncflow-concurrent), name a backend "
                f"(backend = \"<name>\" in {FILE_NAME}, {ENV_BACKEND}=<name>, or "
                f"WorkflowEngine.create(backend=...)), or pass dry_run=True. Installed: "
                f"{', '.join(_plugins.registry().names())}")
        return [DEFAULT_BACKEND]

    def backend_options(self, name: str) -> Mapping[str, Any]:
        """The configured keyword options of backend ``name`` (empty if none)."""
        return self.backends.get(name, {})

    def require_plugins(self) -> None:
        """Raise :class:`ConfigError` when a key asks for a plugin that is not loaded.

        ``telemetry = false`` asks for nothing: it holds without the plugin too.
        """
        for key, (entry_point, distribution) in PLUGIN_KEYS.items():
            value = getattr(self, key)
            if value is None or value is False or _plugins.plugin_manager().has_plugin(
                    entry_point):
                continue
            blocked = {n.strip() for n in os.environ.get("ASYNCFLOW_DISABLE_PLUGINS",
                                                         "").split(",")}
            why = ("is disabled by ASYNCFLOW_DISABLE_PLUGINS" if entry_point in blocked else
                   f"is not installed: pip install {distribution}")
            raise ConfigError(f"{self.source_of(key)}: {key} needs the {distribution} plugin, "
                              f"which {why}")

    def source_of(self, key: str) -> str:
        """Where the value at dotted ``key`` came from."""
        return self.sources.get(key, DEFAULT_SOURCE)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (what ``asyncflow config --json`` prints)."""
        return {"backend": list(self.backend), "backends": {k: dict(v) for k, v in
                                                           self.backends.items()},
                "progress": self.progress, "journal": self.journal, "resume": self.resume,
                "dag": self.dag, "telemetry": self.telemetry,
                "sources": dict(self.sources), "files": list(self.files)}


def load(config: str | Path | None = None) -> Settings:
    """Read every source and merge them; ``config`` is a file passed to ``create()``.

    Raises:
        ConfigError: a file does not parse or does not fit the schema, or an environment
            variable does not parse; the message names the file or variable and the key.
    """
    settings = Settings()
    for layer in _layers(config):
        _merge(settings, layer)
    table = settings.telemetry
    if isinstance(table, dict) and "checkpoint_interval" in table and \
            "checkpoint_path" not in table:
        raise ConfigError(f"{settings.source_of('telemetry.checkpoint_interval')}: "
                          "telemetry.checkpoint_interval needs telemetry.checkpoint_path")
    return settings


def _layers(config: str | Path | None) -> Iterator[Layer]:
    yield from _file(_user_file(), required=False)
    project = _pyproject()
    if project is not None:
        yield from _file(project, required=False, table=("tool", "asyncflow"))
    yield from _file(Path.cwd() / FILE_NAME, required=False)
    named = os.environ.get(ENV_FILE)
    if named:
        yield from _file(Path(named), required=True, why=f"environment variable {ENV_FILE}")
    yield from environment_layers(os.environ)
    yield from _overrides
    if config is not None:
        yield from _file(Path(config), required=True, why="WorkflowEngine.create(config=...)")


# -- files ---------------------------------------------------------------------------------


def _user_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "asyncflow" / "config.toml"


def _pyproject() -> Path | None:
    """The nearest pyproject.toml at or above the cwd, not crossing a repository's root."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return None


def _file(path: Path, *, required: bool, why: str = "",
          table: tuple[str, ...] = ()) -> Iterator[Layer]:
    """The layer of one TOML file (of its ``[tool.asyncflow]`` table when ``table`` is set)."""
    path = path.expanduser().absolute()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{why} names the configuration file {path}, which does not "
                              "exist") from None
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    data = parse_toml(raw, path)
    for key in table:
        inner = data.get(key)
        if inner is None:
            return
        if not isinstance(inner, dict):
            raise ConfigError(f"{path}: {'.'.join(table)} must be a table, not "
                              f"{_kind(inner)}")
        data = inner
    source = f"{path} [{'.'.join(table)}]" if table else str(path)
    prefix = "".join(f"{key}." for key in table)
    yield Layer(source, check(data, source, prefix), str(path))


_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_toml(raw: bytes | str, path: Path | str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a :class:`ConfigError` naming file and line."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_WHERE.search(message)
        if where:
            line, column = where.groups()
            message = message[:where.start()]
        else:  # "(at end of document)"
            line, column = str(text.count("\n") + 1), "1"
            message = message.replace(" (at end of document)", " at the end of the file")
        raise ConfigError(f"{path}:{line}:{column}: invalid TOML: {message}") from None


# -- validation ----------------------------------------------------------------------------


def check(data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """``data`` checked against the schema and normalized (``backend`` becomes a list).

    ``prefix`` is prepended to key paths in messages (``tool.asyncflow.`` for pyproject).
    """
    result: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: unknown key {prefix + key!r}.{hint} Known keys: "
                              f"{', '.join(prefix + k for k in KEYS)}")
        if key == "backend":
            result[key] = _check_backend(value, source, prefix + key)
        elif key == "backends":
            result[key] = _check_backends(value, source, prefix + key)
        elif key in ("progress", "journal"):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {prefix}{key} must be true or false, not "
                                  f"{_kind(value)}")
            result[key] = value
        elif key == "resume":
            if not isinstance(value, bool | str) or value == "":
                raise ConfigError(f"{source}: {prefix}{key} must be {KEYS[key]}, not "
                                  f"{_kind(value)}")
            result[key] = value
        elif key == "dag":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{source}: {prefix}{key} must be {KEYS[key]}, not "
                                  f"{_kind(value)}")
            result[key] = value
        elif key == "telemetry":
            result[key] = _check_telemetry(value, source, prefix + key)
    return result


def _check_telemetry(value: Any, source: str, path: str) -> dict[str, Any] | bool:
    """``False``, or the table's keys (``true`` is ``{}``, a string names the exporter)."""
    if value is True:
        return {}
    if value is False:
        return False
    if isinstance(value, str):
        value = {"exporter": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {path} must be {KEYS['telemetry']}, not {_kind(value)}")
    for key, item in value.items():
        if key not in TELEMETRY_KEYS:
            close = difflib.get_close_matches(key, TELEMETRY_KEYS, n=1, cutoff=0.6)
            hint = f" Did you mean '{path}.{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown key '{path}.{key}'.{hint} Known keys: "
                              f"{', '.join(f'{path}.{k}' for k in TELEMETRY_KEYS)}")
        if key == "checkpoint_interval":
            good = isinstance(item, int | float) and not isinstance(item, bool) and item > 0
        else:
            good = isinstance(item, str) and bool(item.strip())
        if not good:
            raise ConfigError(f"{source}: {path}.{key} must be {TELEMETRY_KEYS[key]}, not "
                              f"{_kind(item)}")
    return dict(value)


def _check_backend(value: Any, source: str, path: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"{source}: {path} must be {KEYS['backend']} (e.g. backend = \"dask\" "
                          f"or backend = [\"dask\", \"concurrent\"]), not {_kind(value)}")
    if not names:
        raise ConfigError(f"{source}: {path} = [] names no backend")
    return [n.strip() for n in names]


def _check_backends(value: Any, source: str, path: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {path} must be {KEYS['backends']}, not {_kind(value)}")
    for name, options in value.items():
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: {path}.{name} must be a table of the {name!r} "
                              f"backend's options ([{path}.{name}] with key = value lines), not "
                              f"{_kind(options)}")
    return {name: dict(options) for name, options in value.items()}


def _kind(value: Any) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
             list: "an array", dict: "a table"}
    kind = kinds.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} ({shown if len(shown) < 60 else shown[:57] + '...'})"


# -- environment variables and command-line values -----------------------------------------


def parse_value(raw: str, where: str) -> Any:
    """A value given as text (environment variable, ``-o key=value``) read as a TOML value:
    ``4`` is an integer, ``true`` a boolean, ``[1, 2]`` an array; a bare word that is not TOML
    stays a string (``tcp://host:8786``). ``where`` names the variable or flag in errors.
    """
    text = raw.strip()
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError as exc:
        if text[:1] in ("[", "{", '"', "'"):  # meant as TOML, but broken: say so
            reason = _TOML_WHERE.sub("", str(exc))
            raise ConfigError(f"{where}: {text!r} is not a valid TOML value ({reason}); quote "
                              "strings, e.g. '\"text\"' or '[1, 2]'") from None
        return text
    if set(parsed) != {"value"}:  # text with newlines that smuggled in more keys
        raise ConfigError(f"{where}: {text!r} is not a single TOML value")
    return parsed["value"]


def environment_layers(environ: Mapping[str, str]) -> Iterator[Layer]:
    """The layers given by ``ASYNCFLOW_BACKEND``, ``ASYNCFLOW_BACKENDS__<NAME>__<OPTION>``,
    ``ASYNCFLOW_TELEMETRY`` and ``ASYNCFLOW_TELEMETRY__<KEY>``."""
    raw = environ.get(ENV_BACKEND, "")
    if raw.strip():
        where = f"environment variable {ENV_BACKEND}"
        names = [n.strip() for n in raw.split(",") if n.strip()]
        if not names:
            raise ConfigError(f"{where}={raw!r} names no backend; set it to a name or a "
                              "comma-separated list (ASYNCFLOW_BACKEND=dask,concurrent)")
        yield Layer(where, {"backend": names})
    for variable in sorted(environ):
        if not variable.startswith("ASYNCFLOW_BACKENDS"):
            continue
        where = f"environment variable {variable}"
        parts = variable[len(ENV_OPTIONS):].lower().split("__")
        if not variable.startswith(ENV_OPTIONS) or len(parts) < 2 or not all(parts):
            raise ConfigError(f"{where}: cannot tell which backend option it sets; write "
                              "ASYNCFLOW_BACKENDS__<BACKEND>__<OPTION>, e.g. "
                              "ASYNCFLOW_BACKENDS__DASK__N_WORKERS=4")
        value = parse_value(environ[variable], where)
        name, *path, option = parts
        options: dict[str, Any] = {}
        node = options
        for part in path:  # deeper nesting: a table-valued option
            node = node.setdefault(part, {})
        node[option] = value
        yield Layer(where, {"backends": {name: options}})
    yield from _telemetry_layers(environ)


def _telemetry_layers(environ: Mapping[str, str]) -> Iterator[Layer]:
    raw = environ.get(ENV_TELEMETRY, "").strip()
    if raw:  # on/off words as the plugin's switch always took them, else a TOML value
        where = f"environment variable {ENV_TELEMETRY}"
        word = _WORDS.get(raw.lower())
        value = word if word is not None else parse_value(raw, where)
        yield Layer(where, check({"telemetry": value}, where))
    prefix = f"{ENV_TELEMETRY}__"
    for variable in sorted(v for v in environ if v.startswith(prefix)):
        where = f"environment variable {variable}"
        key = variable[len(prefix):].lower()
        table = {key: parse_value(environ[variable], where)}
        yield Layer(where, check({"telemetry": table}, where))


def option_layer(assignment: str, default_backend: str | None,
                 source: str = "command line") -> Layer:
    """The layer of one ``-o key=value``: ``backend=dask``, ``backends.dask.n_workers=4``, or a
    bare ``n_workers=4`` (an option of ``default_backend``).
    """
    where = f"{source} -o {assignment}"
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{where}: expected KEY=VALUE, e.g. -o n_workers=4 or "
                          "-o backends.dask.n_workers=4")
    value = parse_value(raw, where)
    path = key.split(".")
    if path[0] not in KEYS:
        if len(path) > 1 or default_backend is None:
            close = difflib.get_close_matches(path[0], KEYS, n=1)
            hint = f"; did you mean {close[0]!r}" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}. Known keys: "
                              f"{', '.join(KEYS)}; a bare option name needs a backend "
                              "(--backend NAME)")
        path = ["backends", default_backend, *path]
    data: dict[str, Any] = {}
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return Layer(where, check(data, where))


# -- overrides: the command line's layers --------------------------------------------------

_overrides: list[Layer] = []


@contextmanager
def overriding(*layers: Layer) -> Iterator[None]:
    """Put ``layers`` above the environment for every engine created inside the block.

    ``asyncflow run`` uses this: its ``--backend``, ``--config`` and ``-o`` apply to every
    engine the script creates without naming a backend. It is process-wide on purpose (an
    engine created in another thread obeys it too), so do not nest it across threads.
    """
    checked = [Layer(layer.source, check(layer.data, layer.source), layer.file)
               for layer in layers]
    _overrides.extend(checked)
    try:
        yield
    finally:
        del _overrides[len(_overrides) - len(checked):]


def file_layers(path: str | Path, why: str) -> list[Layer]:
    """The layer of a file the user named (``--config``): it must exist."""
    return list(_file(Path(path), required=True, why=why))


def overridden_backend() -> Layer | None:
    """The topmost override layer that sets ``backend`` (``asyncflow run --backend``)."""
    for layer in reversed(_overrides):
        if "backend" in layer.data:
            return layer
    return None


# -- merging -------------------------------------------------------------------------------


def _merge(settings: Settings, layer: Layer) -> None:
    data = layer.data
    if layer.file is not None and layer.file not in settings.files:
        settings.files.append(layer.file)
    if "backend" in data:
        settings.backend = list(data["backend"])
        settings.sources["backend"] = layer.source
    for setting in ("progress", "journal", "resume", "dag"):
        if setting in data:
            setattr(settings, setting, data[setting])
            settings.sources[setting] = layer.source
    if "telemetry" in data:
        _merge_telemetry(settings, data["telemetry"], layer.source)
    for name, options in data.get("backends", {}).items():
        merged = settings.backends.setdefault(name, {})
        for key, value in _flatten(options):
            node = merged
            for part in key[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    node[part] = child = {}
                node = child
            node[key[-1]] = value
            settings.sources[".".join(("backends", name, *key))] = layer.source


def _merge_telemetry(settings: Settings, value: dict[str, Any] | bool, source: str) -> None:
    """``false`` replaces everything; a table (``true`` is an empty one) turns telemetry on and
    merges key by key into the table of lower sources, as backend options do."""
    if value is False or not isinstance(settings.telemetry, dict):
        settings.telemetry = False if value is False else {}
        settings.sources["telemetry"] = source
        for key in [k for k in settings.sources if k.startswith("telemetry.")]:
            del settings.sources[key]
    if isinstance(value, dict):
        assert isinstance(settings.telemetry, dict)
        for key, item in value.items():
            settings.telemetry[key] = item
            settings.sources[f"telemetry.{key}"] = source


def _flatten(options: Mapping[str, Any],
             prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Leaf values by key path; a table-valued option merges key by key like the rest."""
    for key, value in options.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def sources_in(settings: Settings, name: str) -> dict[str, str]:
    """Where each top-level option of backend ``name`` came from."""
    prefix = f"backends.{name}."
    found: dict[str, str] = {}
    for key, source in settings.sources.items():
        if key.startswith(prefix):
            found.setdefault(key[len(prefix):].split(".")[0], source)
    return found
