"""Configuration: which backend runs tasks by default, and each backend's options.

Sources, later ones winning: built-in defaults < ``~/.config/asyncflow/config.toml`` <
``[tool.asyncflow]`` in ``pyproject.toml`` < ``asyncflow.toml`` in the working directory <
the file named by ``ASYNCFLOW_CONFIG`` < environment variables (``ASYNCFLOW_BACKEND=dask``,
``ASYNCFLOW_BACKENDS__DASK__N_WORKERS=4``) < arguments to ``WorkflowEngine.create()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncflow import _plugins

__all__ = ["Settings", "load"]


@dataclass
class Settings:
    """The effective configuration, with where each value came from."""

    backend: list[str] = field(default_factory=list)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def backend_names(self, dry_run: bool = False) -> list[str]:
        """The configured backends, the default first."""
        if self.backend:
            return list(self.backend)
        from asyncflow._config import DEFAULT_BACKEND

        if DEFAULT_BACKEND not in _plugins.registry():
            if dry_run:
                return ["noop"]
            from asyncflow.errors import ConfigError

            raise ConfigError("no backend is configured and asyncflow-concurrent, the default, "
                              "is not installed: pip install asyncflow-concurrent, set "
                              "backend = \"<name>\" in asyncflow.toml, or pass dry_run=True")
        return [DEFAULT_BACKEND]

    def backend_options(self, name: str) -> Mapping[str, Any]:
        return self.backends.get(name, {})


def load(config: str | Path | None = None) -> Settings:
    """The effective settings (file sources are added by the configuration module)."""
    settings = Settings()
    env = os.environ.get("ASYNCFLOW_BACKEND")
    if env:
        settings.backend = [n.strip() for n in env.split(",") if n.strip()]
        settings.sources["backend"] = "environment variable ASYNCFLOW_BACKEND"
    return settings
