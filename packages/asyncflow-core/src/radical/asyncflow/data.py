"""``radical.asyncflow.data``: the same objects as :mod:`asyncflow.data`."""

from asyncflow.data import *  # noqa: F403
from asyncflow.data import __all__  # noqa: F401
