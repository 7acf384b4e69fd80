"""Logging helpers on the standard :mod:`logging` module: one call to see what a run does.

AsyncFlow's own modules log under the ``asyncflow`` logger and never configure logging
themselves; a script that wants to see those messages calls :func:`init_default_logger`::

    from asyncflow.log import init_default_logger, get_logger

    init_default_logger("DEBUG", output_file="run.log")
    log = get_logger(__name__)

RADICAL AsyncFlow's ``radical.asyncflow.logging`` is this module under its old name. The
helpers only add handlers to one logger (``asyncflow`` unless ``logger_name`` says otherwise),
so calling :func:`init_default_logger` again replaces what the previous call added instead of
printing every line twice.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["StructuredLogger", "get_logger", "get_structured_logger", "init_default_logger"]

ROOT = "asyncflow"
STYLES = ("modern", "classic", "minimal")

_FORMATS = {  # style -> (format without details, format with details)
    # (rich draws its own time and level columns; these are for a file or a pipe)
    "modern": ("%(levelname)-8s %(name)s: %(message)s",
               "%(levelname)-8s %(name)s %(filename)s:%(lineno)d: %(message)s"),
    "classic": ("%(asctime)s %(levelname)-8s %(name)s: %(message)s",
                "%(asctime)s %(levelname)-8s %(name)s %(threadName)s %(filename)s:%(lineno)d: "
                "%(message)s"),
    "minimal": ("%(levelname)s: %(message)s", "%(levelname)s %(name)s: %(message)s"),
}
_OURS = "_asyncflow_handler"  # marks the handlers these helpers added, to replace them


def init_default_logger(
    log_level: int | str = logging.INFO,
    output_file: str | os.PathLike[str] | None = None,
    file_log_level: int | str | None = None,
    use_colors: bool = True,
    show_details: bool = False,
    style: str = "modern",
    clear_handlers: bool = False,
    logger_name: str = ROOT,
    structured_logging: bool = False,
    structured_file: str | os.PathLike[str] | None = None,
) -> logging.Logger:
    """Send the ``asyncflow`` logger's messages to stderr, and optionally to files.

    Args:
        log_level: The console's level, as a number or a name (``"DEBUG"``).
        output_file: Also write plain text lines to this file.
        file_log_level: The file's level; ``log_level`` when not given.
        use_colors: On a terminal, draw the console with rich when it is installed.
        show_details: Add where each message came from (logger, file and line).
        style: ``"modern"`` (rich's layout on a terminal), ``"classic"`` (time, level, logger,
            message) or ``"minimal"`` (level and message).
        clear_handlers: Remove every handler the logger has first, not only ours.
        logger_name: The logger to configure; its children (``asyncflow.concurrent``...) use it.
        structured_logging: Also write one JSON object per message to ``structured_file``.
        structured_file: Where JSON lines go; ``<logger_name>.jsonl`` when not given.

    Returns:
        The configured logger. Calling again replaces the handlers the last call added.
    """
    if style not in STYLES:
        raise ValueError(f"init_default_logger: style={style!r} is not one of "
                         f"{', '.join(map(repr, STYLES))}")
    console_level = _level(log_level, "log_level")
    file_level = console_level if file_log_level is None else _level(file_log_level,
                                                                      "file_log_level")
    logger = logging.getLogger(logger_name)
    for handler in list(logger.handlers):
        if clear_handlers or getattr(handler, _OURS, False):
            logger.removeHandler(handler)
            handler.close()
    plain = logging.Formatter(_FORMATS[style][show_details])
    handlers = [_console(console_level, plain, rich=use_colors and style == "modern",
                         details=show_details)]
    if output_file is not None:
        handlers.append(_file_handler(output_file, file_level, logging.Formatter(
            _FORMATS["classic"][show_details])))
    if structured_logging:
        handlers.append(_file_handler(structured_file or f"{logger_name}.jsonl", file_level,
                                      JsonFormatter()))
    for handler in handlers:
        setattr(handler, _OURS, True)
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))
    return logger


def get_logger(name: str | None = None) -> logging.Logger:
    """A logger under ``asyncflow``, so :func:`init_default_logger`'s handlers print it.

    ``None`` gives the ``asyncflow`` logger itself; ``"asyncflow..."`` names are used as
    they are; any other name goes under it (``get_logger("my.flow")`` is
    ``asyncflow.my.flow``).
    """
    if name is None or name == ROOT or name.startswith(ROOT + "."):
        return logging.getLogger(name or ROOT)
    return logging.getLogger(f"{ROOT}.{name}")


class StructuredLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose calls take fields as keywords: ``log.info("staged", uid=uid, size=n)``.

    The fields go into the JSON lines of ``structured_logging`` and after the message on the
    console.
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        own = {"exc_info", "stack_info", "stacklevel", "extra"}
        fields = {key: kwargs.pop(key) for key in list(kwargs) if key not in own}
        extra = dict(kwargs.get("extra") or {})
        extra["fields"] = {**(self.extra or {}), **extra.get("fields", {}), **fields}
        kwargs["extra"] = extra
        if extra["fields"]:
            msg = f"{msg} " + " ".join(f"{k}={v!r}" for k, v in extra["fields"].items())
        return msg, kwargs


def get_structured_logger(name: str | None = None, **fields: Any) -> StructuredLogger:
    """:func:`get_logger`, taking fields as keywords; ``fields`` go with every message."""
    return StructuredLogger(get_logger(name), fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=repr)


def _level(value: int | str, option: str) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise ValueError(f"init_default_logger: {option}={value!r} is not a logging level "
                         "(DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)")
    return level


def _console(level: int, plain: logging.Formatter, *, rich: bool,
             details: bool) -> logging.Handler:
    handler: logging.Handler | None = None
    if rich and sys.stderr.isatty():
        try:  # rich only draws a terminal; without it, or elsewhere, plain lines
            from rich.logging import RichHandler
        except ImportError:
            pass
        else:
            handler = RichHandler(show_path=details, rich_tracebacks=True)
            handler.setFormatter(logging.Formatter("%(message)s"))
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(plain)
    handler.setLevel(level)
    return handler


def _file_handler(path: str | os.PathLike[str], level: int,
                  formatter: logging.Formatter) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(formatter)
    return handler
