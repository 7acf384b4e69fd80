"""``radical.asyncflow.errors``: the same objects as :mod:`asyncflow.errors`."""

from asyncflow.errors import *  # noqa: F403
from asyncflow.errors import __all__  # noqa: F401
