"""The agent's own accept loop: every loopback connection is timed and counted.

aiohttp serves each connection, but the agent accepts them itself, so that no local process can
hold the daemon's file descriptors and starve the real page:

- a connection must complete an allowed WebSocket handshake within ``handshake_timeout``
  seconds, or it is closed (idle sockets, half-sent handshakes, refused handshakes kept alive);
- at most ``max_pending_connections`` connections may be waiting for their handshake; a new one
  closes the oldest waiting one, so a page's fresh connection is never refused;
- each allowed origin keeps at most ``max_connections_per_origin`` open WebSockets; a new one
  closes that origin's oldest (1013 try again later). An open WebSocket lives while it answers
  the heartbeat pings, which closes a vanished peer's connection within a minute;
- accept() failures (out of file descriptors) back off and are logged at a bounded rate
  (``common/accept.py``).

On loopback a peer address names nothing (any local process can use any 127.0.0.0/8 source),
so the caps are per origin and in all, never per peer address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections import OrderedDict, deque

from aiohttp import WSCloseCode, web

from cert_agent.common.accept import Acceptor

log = logging.getLogger("cert_agent.listener")
ABSENT_ADDRESS = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


class ConnectionGuard:
    """The limits a connection meets before it is served: the handshake must end within
    ``handshake_timeout``, at most ``max_pending`` handshakes are under way, and one origin keeps
    at most ``max_per_origin`` connections open."""

    def __init__(self, *, handshake_timeout: float, max_pending: int, max_per_origin: int) -> None:
        self._handshake_timeout = handshake_timeout
        self._max_pending = max_pending
        self._max_per_origin = max_per_origin
        self._pending: OrderedDict[asyncio.BaseTransport, asyncio.TimerHandle] = OrderedDict()
        self._open: dict[str, deque[web.WebSocketResponse]] = {}
        self._acceptor = Acceptor(log)
        self._closing: set[asyncio.Task[None]] = set()

    # --- listening ------------------------------------------------------------------------------

    def listen(self, hosts: tuple[str, ...], port: int) -> None:
        """Bind ``port`` on every one of ``hosts`` (``serve`` then accepts on them). All or
        nothing: when one address cannot be bound, the others are let go and OSError names the
        one that failed, so the agent is never reachable on some of the addresses a page may
        use and not on others (where a squatter would answer the page)."""
        bound: list[socket.socket] = []
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.create_server((host, port), family=family, backlog=128)
            except OSError as exc:
                if exc.errno in ABSENT_ADDRESS:  # no such address here (no IPv6): no page can use it
                    log.info("not listening on %s: %s", host, exc.strerror)
                    continue
                for other in bound:
                    other.close()
                raise OSError(exc.errno, f"{host}:{port}: {exc.strerror}") from None
            bound.append(sock)
        if not bound:
            raise OSError(errno.EADDRNOTAVAIL, f"none of {', '.join(hosts)} exists on this machine")
        for sock in bound:
            self._acceptor.add(sock)

    def serve(self, protocol_factory: web.Server) -> None:
        """Accept on every bound socket and serve each connection with a protocol from
        ``protocol_factory`` (aiohttp's server)."""
        self._acceptor.start(protocol_factory, self._admit)

    async def close(self) -> None:
        await self._acceptor.close()
        for transport, timer in list(self._pending.items()):
            timer.cancel()
            transport.close()
        self._pending.clear()

    # --- connections waiting for their handshake ------------------------------------------------

    def _admit(self, transport: asyncio.BaseTransport) -> None:
        while len(self._pending) >= self._max_pending:
            oldest, timer = self._pending.popitem(last=False)
            timer.cancel()
            oldest.close()
        loop = asyncio.get_running_loop()
        self._pending[transport] = loop.call_later(self._handshake_timeout, self._expire, transport)

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        if self._pending.pop(transport, None) is not None:
            transport.close()

    # --- open WebSockets ------------------------------------------------------------------------

    def upgraded(self, transport: asyncio.BaseTransport | None, origin: str, ws: web.WebSocketResponse) -> None:
        """The connection completed an allowed handshake: stop its timer, count it for its origin."""
        if transport is not None:
            timer = self._pending.pop(transport, None)
            if timer is not None:
                timer.cancel()
        sockets = self._open.setdefault(origin, deque())
        while sockets and sockets[0].closed:
            sockets.popleft()
        if len(sockets) >= self._max_per_origin:
            oldest = sockets.popleft()
            log.warning("more than %d connections for %s: closing the oldest", self._max_per_origin, origin)
            closing = asyncio.create_task(self._close_ws(oldest))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        sockets.append(ws)

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse) -> None:
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too many connections")

    def closed(self, origin: str, ws: web.WebSocketResponse) -> None:
        sockets = self._open.get(origin)
        if sockets is not None:
            with contextlib.suppress(ValueError):
                sockets.remove(ws)
            if not sockets:
                del self._open[origin]
