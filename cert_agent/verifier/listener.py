"""The verifier's own accept loop: slow and many clients cost their own connections only.

aiohttp has no timeout for reading a request's headers and no cap on connections, so a client
that sends one header byte every few seconds holds a connection (and a file descriptor) for
ever; a thousand of them take the service down. The verifier accepts connections itself:

- a connection must have its request's headers in within ``request_timeout`` seconds of being
  accepted, or of its previous answer (keep-alive), or it is closed; a body must arrive within
  the same time once the handler reads it (``app.json_body``);
- at most ``max_connections`` are open (never more than the descriptor limit allows, less a
  reserve for the database and files); a new one closes the oldest that is not being answered,
  so a fresh client such as a health check always gets in;
- accept() failures back off and are logged at a bounded rate (``common/accept.py``).

Behind a reverse proxy that already does this, the same limits do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from cert_agent.common.accept import Acceptor

log = logging.getLogger("cert_agent.verifier.listener")
DESCRIPTOR_RESERVE = 64  # descriptors kept for the database, CRL files, the log


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to what RLIMIT_NOFILE leaves after the reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - DESCRIPTOR_RESERVE))


class HttpGuard:
    def __init__(self, *, max_connections: int, request_timeout: float) -> None:
        self.max_connections = connection_cap(max_connections)
        self._timeout = request_timeout
        # every open connection, oldest first, with its deadline (None while it is answered)
        self._open: OrderedDict[asyncio.BaseTransport, asyncio.TimerHandle | None] = OrderedDict()
        self._acceptor = Acceptor(log)

    def listen(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._acceptor.add(socket.create_server((host, port), family=family, backlog=512))

    def serve(self, protocol_factory: web.Server) -> None:
        self._acceptor.start(protocol_factory, self._admit)

    async def close(self) -> None:
        await self._acceptor.close()
        for timer in self._open.values():
            if timer is not None:
                timer.cancel()

    @property
    def open_connections(self) -> int:
        return sum(1 for transport in self._open if not transport.is_closing())

    # --- connections ------------------------------------------------------------------------

    def _admit(self, transport: asyncio.BaseTransport) -> None:
        if len(self._open) >= self.max_connections:
            self._forget_closed()
        if len(self._open) >= self.max_connections:
            self._close_oldest_idle()
        self._open[transport] = self._deadline(transport)

    def _deadline(self, transport: asyncio.BaseTransport) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(self._timeout, self._expire, transport)

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        if transport in self._open and self._open[transport] is not None:
            del self._open[transport]
            transport.close()

    def _forget_closed(self) -> None:
        for transport in [t for t in self._open if t.is_closing()]:
            timer = self._open.pop(transport)
            if timer is not None:
                timer.cancel()

    def _close_oldest_idle(self) -> None:
        idle = next((t for t, timer in self._open.items() if timer is not None), None)
        victim = idle if idle is not None else next(iter(self._open))
        timer = self._open.pop(victim)
        if timer is not None:
            timer.cancel()
        victim.close()

    @contextlib.contextmanager
    def answering(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """Around a handler: no deadline while it answers, a new one after (keep-alive)."""
        if transport is None or transport not in self._open:
            yield
            return
        timer = self._open[transport]
        if timer is not None:
            timer.cancel()
        self._open[transport] = None
        try:
            yield
        finally:
            if transport in self._open:
                self._open[transport] = None if transport.is_closing() else self._deadline(transport)


GUARD_KEY = web.AppKey("http_guard", HttpGuard)


@web.middleware
async def guarded(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The guard's view of each request (outermost middleware)."""
    guard = request.app.get(GUARD_KEY)
    if guard is None:  # an app run without the guard (tests that use aiohttp's own runner)
        return await handler(request)
    with guard.answering(request.transport):
        return await handler(request)
