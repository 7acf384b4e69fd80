"""The process environment RADICAL-Pilot needs, set up before it is imported.

RADICAL-Pilot starts its client daemons through ``PATH`` and launches the pilot agent with the
interpreter of ``$VIRTUAL_ENV`` (``virtenv_mode: local``); without it the agent falls back to
the login shell's ``python3``, which usually lacks RADICAL-Pilot, and the pilot fails. So the
agent runs where this interpreter runs: never a fresh virtualenv, never a network install.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["own_environment", "prepare", "worker_pythonpath"]

# What a resource configuration must say for the agent to use this interpreter's environment.
OWN_ENVIRONMENT = {"virtenv_mode": "local", "rp_version": "installed"}


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


# Sessions (and their managers) are created one at a time in a process: while one is, this
# changes os.environ for the whole process, and radical.utils picks its ZMQ bridges' ports in
# a way that is not thread-safe. Two engines gathered on Slurm in CI failed there: one session
# never came up, another creation died with EBADF in radical.utils' find_port().
_CREATING = threading.Lock()


@contextlib.contextmanager
def own_environment(resource: str, site: Mapping[str, Any] | None = None) -> Iterator[None]:
    """While inside (creating the session and its managers), ``resource`` is configured to use
    this environment, and is described by ``site`` when one is given; one at a time in a
    process.

    Many sites' shipped configurations say ``virtenv_mode: create``: the agent would build a
    fresh virtualenv and pip-install RADICAL-Pilot into it, from the network, and never see
    the user's packages. RADICAL merges user configurations, key by key, from
    ``$RADICAL_CONFIG_USER_DIR/.radical/<module>/configs`` (default ``$HOME``) over its own;
    a session reads them once, when it is created. So for that moment this points
    ``RADICAL_CONFIG_USER_DIR`` at a copy of the user's configurations with
    :data:`OWN_ENVIRONMENT` added for ``resource`` (or with ``site`` as ``resource``, where
    its own values win): the site is known to that session only, and no file is left behind.
    """
    with _CREATING, _configured(resource, site):
        yield


@contextlib.contextmanager
def _configured(resource: str, site: Mapping[str, Any] | None) -> Iterator[None]:
    import radical.utils as ru  # imported with radical.pilot already

    domain, _, label = resource.partition(".")
    if site is None:
        current = (ru.Config("radical.pilot.resource", name="*", expand=False).get(domain)
                   or {}).get(label)
        if current is None or all(current.get(k) == v for k, v in OWN_ENVIRONMENT.items()):
            yield  # unknown (RADICAL-Pilot will say so) or right as it is
            return
    user = os.environ.get("RADICAL_CONFIG_USER_DIR")
    with tempfile.TemporaryDirectory(prefix="asyncflow-radical-config-") as folder:
        source = Path(user or os.environ.get("HOME") or "/", ".radical")
        copy = Path(folder, ".radical")
        for configs in source.glob("**/configs"):
            shutil.copytree(configs, copy / configs.relative_to(source), dirs_exist_ok=True)
        target = copy / "pilot" / "configs" / f"resource_{domain}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        mine: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
        if site is None:
            mine.setdefault(label, {}).update(OWN_ENVIRONMENT)
        else:  # the whole description: nothing merged in from a file of the same name
            mine[label] = {**OWN_ENVIRONMENT, **_local_workdir(site), **site}
        target.write_text(json.dumps(mine, indent=2))
        os.environ["RADICAL_CONFIG_USER_DIR"] = folder
        try:
            yield
        finally:
            if user is None:
                del os.environ["RADICAL_CONFIG_USER_DIR"]
            else:
                os.environ["RADICAL_CONFIG_USER_DIR"] = user


def _local_workdir(site: Mapping[str, Any]) -> dict[str, str]:
    """Pilot sandboxes under this user's home when the site is reached from here.

    RADICAL-Pilot's default is ``$HOME`` as the batch job sees it, but a job submitted through
    psij (Slurm, PBS...) does not inherit this environment, and without ``HOME`` the sandbox
    lands in ``/radical.pilot.sandbox``. A site whose endpoints are all on localhost shares
    this machine's file system, so this home is the job's too.
    """
    endpoints = [url for schema in (site.get("schemas") or {}).values()
                 for url in schema.values() if isinstance(url, str)]
    if endpoints and all("://localhost" in url for url in endpoints):
        return {"default_remote_workdir": os.path.expanduser("~")}
    return {}


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
