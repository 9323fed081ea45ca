"""A Python client of the agent's protocol (``docs/protocol.md``): the one the ``cert-agent``
command and the tests use.

Numbered requests, replies matched by id (in whatever order they come), events kept aside for
whoever asks for them. ``control_client`` opens the user's own control connection
(``control.py``); tests open a page's connection with an Origin and wrap it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from cert_agent.agent import control


class AgentClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, timeout: float = 30) -> None:
        self.ws = ws
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._replies: dict[Any, dict[str, Any]] = {}

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one request; its reply (``result`` or ``error``)."""
        self._next += 1
        request_id = self._next
        await self.ws.send_json({"id": request_id, "method": method, "params": params})
        return await self.reply(request_id)

    async def reply(self, request_id: Any, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout or self.timeout):
            while request_id not in self._replies:
                await self._receive()
        return self._replies.pop(request_id)

    async def event(self, name: str, timeout: float = 10) -> dict[str, Any]:
        """The next event called ``name`` (one that came earlier first)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["event"] == name:
                        self.events.remove(event)
                        return event
                await self._receive()

    async def _receive(self) -> None:
        message = await self.ws.receive_json()
        if "event" in message:
            self.events.append(message)
        else:
            self._replies[message["id"]] = message


@contextlib.asynccontextmanager
async def control_client(port: int, timeout: float) -> AsyncIterator[AgentClient]:
    """The user's own connection to their agent on ``port`` (WorkerFailed: it left no token)."""
    async with control.connect(port, timeout) as ws:
        yield AgentClient(ws, timeout)
