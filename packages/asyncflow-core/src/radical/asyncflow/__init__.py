"""``radical.asyncflow``: the import name of RADICAL AsyncFlow, answered by asyncflow-core.

Existing scripts (``from radical.asyncflow import WorkflowEngine``) get the very same objects
as ``import asyncflow``.
"""

from asyncflow import *  # noqa: F403
from asyncflow import __all__, __getattr__, __version__  # noqa: F401
