"""The process environment RADICAL-Pilot needs, set up before it is imported.

RADICAL-Pilot starts its client daemons through ``PATH`` and launches the pilot agent with the
interpreter of ``$VIRTUAL_ENV`` (``virtenv_mode: local``); without it the agent falls back to
the login shell's ``python3``, which usually lacks RADICAL-Pilot, and the pilot fails. So the
agent runs where this interpreter runs: never a fresh virtualenv, never a network install.
"""

from __future__ import annotations

import os
import sys

__all__ = ["prepare", "worker_pythonpath"]


def prepare(resource: str) -> None:
    """Point RADICAL-Pilot at this interpreter's environment and quiet it down.

    Variables the user set already are left alone, except that an active virtualenv always
    wins: the pilot must see the packages this process imports.
    """
    env = os.environ
    if sys.prefix != sys.base_prefix:  # a virtualenv (venv, virtualenv, uv, nox, tox)
        env["VIRTUAL_ENV"] = sys.prefix
        bindir = os.path.dirname(sys.executable)
        path = env.get("PATH", "")
        if path.split(os.pathsep, 1)[0] != bindir:
            env["PATH"] = bindir + os.pathsep + path if path else bindir
    if resource == "local.localhost" or resource.endswith(".localhost"):
        env.setdefault("RADICAL_DEFAULT_IFACE", "lo")  # every ZMQ endpoint on 127.0.0.1
    env.setdefault("RADICAL_REPORT", "FALSE")  # no progress bars on the user's stdout
    env.setdefault("RADICAL_PROFILE", "FALSE")  # no *.prof files, no NTP lookups


def worker_pythonpath() -> str:
    """``PYTHONPATH`` for RAPTOR workers: this process's own import roots.

    Functions from ``__main__`` travel by value, but a function defined in a module travels
    by reference, so the worker must be able to import that module. The interpreter's own
    directories (standard library, site-packages) are left out: the worker has its own.
    """
    own = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if any(_inside(path, prefix) for prefix in own):
            continue
        if os.path.isdir(path) and path not in roots:
            roots.append(path)
    inherited = os.environ.get("PYTHONPATH")
    if inherited:
        roots.append(inherited)
    return os.pathsep.join(roots)


def _inside(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip(os.sep) + os.sep)
