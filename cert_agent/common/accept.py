"""Accepting connections ourselves, for both servers: accept() failures (out of file
descriptors, out of buffers) back off instead of spinning, and are logged at most once per
``ERROR_LOG_INTERVAL`` seconds with the count of those not logged, so running out of
descriptors costs a few log lines, never a flood (asyncio's own accept logs each failure)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from aiohttp import web

ERROR_LOG_INTERVAL = 10.0
BACKOFF = 0.1  # seconds to wait after a failed accept(): never a busy loop


class AcceptErrors:
    """Counts accept() failures and logs them at a bounded rate."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._count = 0
        self._last = -ERROR_LOG_INTERVAL

    def failed(self, exc: OSError) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= ERROR_LOG_INTERVAL:
            self._log.warning("cannot accept connections: %s (%d failures since the last report)", exc, self._count)
            self._count = 0
            self._last = now


async def accept_forever(
    sock: socket.socket,
    protocol_factory: web.Server,
    admitted: Callable[[asyncio.BaseTransport], None],
    errors: AcceptErrors,
) -> None:
    """Accept on ``sock`` until cancelled; serve each connection with a protocol of
    ``protocol_factory`` (aiohttp's server) and hand its transport to ``admitted``."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = await loop.sock_accept(sock)
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: wait, then try again
            errors.failed(exc)
            await asyncio.sleep(BACKOFF)
            continue
        try:
            transport, _ = await loop.connect_accepted_socket(protocol_factory, conn)
        except OSError as exc:
            conn.close()
            errors.failed(exc)
            continue
        admitted(transport)


class Acceptor:
    """Listening sockets and the accept loops on them, started and stopped together."""

    def __init__(self, log: logging.Logger) -> None:
        self.sockets: list[socket.socket] = []
        self._loops: list[asyncio.Task[None]] = []
        self._errors = AcceptErrors(log)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)

    def start(self, protocol_factory: web.Server, admitted: Callable[[asyncio.BaseTransport], None]) -> None:
        for sock in self.sockets:
            loop = accept_forever(sock, protocol_factory, admitted, self._errors)
            self._loops.append(asyncio.create_task(loop, name=f"accept {sock.getsockname()[:2]}"))

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self.sockets:
            sock.close()
