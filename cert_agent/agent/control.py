"""The user's own connection to their running agent (``cert-agent verify-pin``).

Some things only the user may do, never a page: spend a medium's last PIN try, or a try beyond
a site's share (``PinAccounting.admit``). The agent writes a random token into a private
file of the user's runtime folder when it starts (``control-PORT.token``, mode 0600, folder
0700) and removes it when it stops; a WebSocket handshake that carries it in the
``X-Cert-Agent-Control`` header is the user's own (origin ``cert-agent:local``). A page can
neither read the file nor set that header on a WebSocket, and another user's process is
refused before the header is read (the uid check). Such a connection may verify or change a
PIN and list tokens; it signs no login (there is no site to bind a signature to).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from cert_agent.agent.errors import PrivateDirUnsafe, WorkerFailed
from cert_agent.agent.instance import runtime_dir
from cert_agent.agent.private_files import open_private, private_dir

HEADER = "X-Cert-Agent-Control"


def token_path(port: int) -> Path:
    return runtime_dir() / f"control-{port}.token"


class ControlToken:
    """The running agent's token: made at start, removed at stop."""

    def __init__(self, port: int) -> None:
        self._path = token_path(port)
        self._value = secrets.token_urlsafe(32)
        private_dir(self._path.parent)
        fd = open_private(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self._value)

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self._value.encode("ascii"))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self._path.unlink()


def read_token(port: int) -> str | None:
    """The token of this user's agent on ``port`` (None when it is not there)."""
    try:
        path = token_path(port)
        private_dir(path.parent)
        if not path.exists():
            return None
        with os.fdopen(open_private(path, os.O_RDONLY), encoding="ascii") as handle:
            return handle.read().strip() or None
    except (PrivateDirUnsafe, OSError, ValueError):  # not there, or not ours: not to be trusted
        return None


# --- the command's side --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(port: int, timeout: float) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """The user's own WebSocket to their agent on ``port``; WorkerFailed when it left no token."""
    token = read_token(port)
    if token is None:
        raise WorkerFailed(f"the running agent on port {port} left no control token")
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/ws", headers={HEADER: token}) as ws,
    ):
        yield ws
