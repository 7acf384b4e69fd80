"""What identifies a task's call across runs, so that a resumed run can find its result.

A key is a SHA-256 of the function's module and qualified name and of the call's pickled
arguments, in which each upstream future stands for that task's own key (or, for a future
with none, such as a block's, a digest of its pickled value). ``cache_key=`` on a decorator
replaces the arguments with what the user says identifies the call.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
from typing import TYPE_CHECKING, Any

from asyncflow._kernel import deps as _deps
from asyncflow._kernel.task import TaskFuture

if TYPE_CHECKING:
    from asyncflow._kernel.task import TaskRecord

__all__ = ["cache_key", "dumps"]

log = logging.getLogger("asyncflow.journal")


def dumps(value: Any) -> bytes:
    """``value`` pickled, by cloudpickle when it is installed and plain pickle cannot."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        try:
            import cloudpickle
        except ImportError:
            cloudpickle = None
        if cloudpickle is None:
            raise  # pickle's own error, which says what could not be pickled
        return cloudpickle.dumps(value)  # type: ignore[no-any-return]


class _KeyPickler(pickle.Pickler):
    """Pickles a call's arguments with every upstream future replaced by what identifies its
    result: its own key, or a digest of its value (a block's result, say). Hashing keys
    rather than values makes a chain's keys cheap and stable even for large results.
    """

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, TaskFuture):
            key = getattr(obj, "_cache_key", None)
            if key is None:
                key = "value:" + hashlib.sha256(dumps(obj.result())).hexdigest()
            return key
        return None


def cache_key(task: TaskRecord) -> str | None:
    """What identifies ``task``'s call across runs, or ``None`` when nothing stable does.

    The function's module and qualified name, plus either the task's ``cache_key=`` option
    (a string, or a function of the call's arguments) or a hash of the pickled arguments.
    """
    fn = task.fn
    scope = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', task.name)}"
    explicit = task.options.cache_key
    try:
        if explicit is not None:
            if callable(explicit):
                explicit = explicit(*_deps.resolve(task.args), **_deps.resolve(task.kwargs))
            identity = f"explicit:{explicit}".encode()
        else:
            buffer = io.BytesIO()
            _KeyPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((task.args, task.kwargs))
            identity = buffer.getvalue()
    except Exception as exc:
        log.debug("task %s (%s) has no cache key and will run on resume: %s: %s", task.name,
                  task.uid, type(exc).__name__, exc)
        return None
    return hashlib.sha256(scope.encode() + b"\0" + identity).hexdigest()
