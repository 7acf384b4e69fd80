"""``radical.asyncflow.logging``: RADICAL AsyncFlow's logging helpers, now :mod:`asyncflow.log`.

Absolute imports keep this module from shadowing the standard library's ``logging`` for the
package's own code.
"""

from asyncflow.log import *  # noqa: F403
from asyncflow.log import __all__  # noqa: F401
