"""Keep-alive connections that end after a number of answers, so client pools spread out.

The workers of a BentoML service share one listening socket, and a worker that wakes
accepts every connection waiting on it. A client that opens its pool at once (a load
balancer, a proxy, another service, a load generator) can then keep all of its
connections on one worker for as long as they live, leaving the other workers' cores
idle. :class:`KeepAliveLimit` asks the client to close a connection after
``max_requests`` answers on it (``Connection: close``, as nginx's
``keepalive_requests`` does); the client opens a new one, and the worker that takes it
is the one waiting in ``accept``, not the one busy answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["KeepAliveLimit"]

#: Connections tracked at once; beyond this the oldest entry is forgotten (a client that
#: went away without reaching the limit leaves one behind).
_TRACKED = 4096


class KeepAliveLimit:
    """ASGI middleware: ``Connection: close`` on every ``max_requests``-th answer of a connection.

    A connection is told apart by the client's address and port, unique while it is
    open. ``max_requests=0`` turns the limit off.
    """

    def __init__(self, app: Any, *, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self._answered: dict[tuple, int] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        peer = scope.get("client")
        if scope["type"] != "http" or not self.max_requests or not peer:
            await self.app(scope, receive, send)
            return
        key = tuple(peer)
        n = self._answered.pop(key, 0) + 1  # re-inserted last: the dict stays oldest-first
        if n < self.max_requests:
            self._answered[key] = n
            if len(self._answered) > _TRACKED:
                del self._answered[next(iter(self._answered))]
            await self.app(scope, receive, send)
            return

        async def send_closing(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
