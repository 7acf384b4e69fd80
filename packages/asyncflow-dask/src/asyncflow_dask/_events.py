"""Client side of the "body started" events: one subscription per Dask client, shared.

A Dask client holds one handler per event topic, and a user's client may serve several
backends at once, so the handler routes each event to the backend whose token it carries.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from asyncflow_dask._worker import TOPIC

Listener = Callable[[str, str, str], None]  # (uid, Dask key, worker address)

_routes: weakref.WeakKeyDictionary[Any, dict[str, Listener]] = weakref.WeakKeyDictionary()


def listen(client: Any, token: str, listener: Listener) -> None:
    """Call ``listener`` for every start event of the backend ``token`` that uses ``client``."""
    routes = _routes.get(client)
    if routes is None:
        routes = _routes[client] = {}
        client.subscribe_topic(TOPIC, partial(_dispatch, routes))
    routes[token] = listener


def stop_listening(client: Any, token: str) -> None:
    routes = _routes.get(client)
    if routes is None:
        return
    routes.pop(token, None)
    if not routes:
        del _routes[client]
        if client.status == "running":
            client.unsubscribe_topic(TOPIC)


def _dispatch(routes: dict[str, Listener], event: tuple[float, Any]) -> None:
    token, uid, key, worker = event[1]
    listener = routes.get(token)
    if listener is not None:
        listener(uid, key, worker)
