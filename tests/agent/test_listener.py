"""The agent's accept loop on its own (``agent/listener.py``): real sockets and a small aiohttp
server in the test's process. ``test_agent_hardening.py`` shows the same limits against the
whole agent, ``test_port_squatters.py`` the binding against other users' processes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from cert_agent.agent.listener import ConnectionGuard
from tests.harness.agent import free_port

ORIGIN = "https://etax.example.com"


@asynccontextmanager
async def serving(guard: ConnectionGuard, port: int) -> AsyncIterator[None]:
    """``guard`` listening on 127.0.0.1:``port``, upgrading every WebSocket it is sent."""

    async def upgrade(request: web.BaseRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        guard.upgraded(request.transport, ORIGIN, ws)
        try:
            async for _ in ws:
                pass
        finally:
            guard.closed(ORIGIN, ws)
        return ws

    server = web.Server(upgrade)
    guard.listen(("127.0.0.1",), port)
    guard.serve(server)
    try:
        yield
    finally:
        await guard.close()
        await server.shutdown(1)


def _guard(**limits: float) -> ConnectionGuard:
    settings = {"handshake_timeout": 5.0, "max_pending": 8, "max_per_origin": 4} | limits
    return ConnectionGuard(
        handshake_timeout=settings["handshake_timeout"],
        max_pending=int(settings["max_pending"]),
        max_per_origin=int(settings["max_per_origin"]),
    )


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def test_binding_is_all_or_nothing_and_names_the_address_that_failed() -> None:
    port = free_port()
    with socket.create_server(("::1", port), family=socket.AF_INET6):  # someone holds one address
        with pytest.raises(OSError, match=r"::1:"):
            _guard().listen(("127.0.0.1", "::1"), port)
        with socket.create_server(("127.0.0.1", port)):  # the other address was let go
            pass


async def test_a_connection_that_sends_no_handshake_is_closed_after_the_timeout() -> None:
    port = free_port()
    async with serving(_guard(handshake_timeout=0.3), port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_by_peer(reader, within=3)
        writer.close()


async def test_a_new_connection_closes_the_oldest_one_still_waiting_for_its_handshake() -> None:
    port = free_port()
    async with serving(_guard(max_pending=2), port):
        first = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        others = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        assert await _closed_by_peer(first[0], within=3)
        assert not await _closed_by_peer(others[-1][0], within=0.3)
        for _, writer in [first, *others]:
            writer.close()


async def test_an_origin_over_its_cap_loses_its_oldest_websocket_with_try_again_later() -> None:
    port = free_port()
    async with serving(_guard(max_per_origin=2), port), aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{port}/ws"
        oldest = await http.ws_connect(url)
        await asyncio.sleep(0.1)
        newer = [await http.ws_connect(url) for _ in range(2)]
        message = await oldest.receive(timeout=3)
        assert message.type is aiohttp.WSMsgType.CLOSE and oldest.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
        assert not newer[-1].closed
        for ws in [oldest, *newer]:
            await ws.close()
