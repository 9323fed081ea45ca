"""A TCP proxy that counts round trips: put between a client and its server (here the verifier
and PostgreSQL), it forwards bytes both ways untouched and counts, per connection, each time the
client speaks again after the server has answered. That is how many times the client waited
for the server, whatever the client's driver thinks it sent; the count does not depend on the
code under test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class RoundTrips:
    port: int = 0
    count: int = 0  # over all connections since the proxy started
    _waiting: dict[int, bool] = field(default_factory=dict)  # per connection: has the server answered?

    def _client_spoke(self, connection: int) -> None:
        if self._waiting.get(connection, True):
            self.count += 1
        self._waiting[connection] = False

    def _server_spoke(self, connection: int) -> None:
        self._waiting[connection] = True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spoke: Callable[[], None]) -> None:
    try:
        while data := await reader.read(65536):
            spoke()
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def counting_proxy(host: str, port: int) -> AsyncIterator[RoundTrips]:
    """A proxy on a free loopback port to ``host:port``; its ``port`` and running ``count``."""
    trips = RoundTrips()
    numbers = itertools.count()  # each connection its own number (an id() may be reused)
    running: set[asyncio.Future[tuple[None, None]]] = set()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        connection = next(numbers)
        server_reader, server_writer = await asyncio.open_connection(host, port)
        both = asyncio.gather(
            _pipe(client_reader, server_writer, lambda: trips._client_spoke(connection)),
            _pipe(server_reader, client_writer, lambda: trips._server_spoke(connection)),
        )
        running.add(both)
        with suppress(asyncio.CancelledError):  # the proxy stops
            await both

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    trips.port = server.sockets[0].getsockname()[1]
    try:
        yield trips
    finally:
        server.close()
        for both in running:
            both.cancel()
        await server.wait_closed()
