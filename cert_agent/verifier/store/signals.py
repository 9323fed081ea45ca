"""Waking a page that waits (a long poll) for a 扫码验证 answer as soon as the answer comes.

Within one process an ``asyncio.Event`` per waiting request does it. Instances sharing one
PostgreSQL hear of an answer given at another through LISTEN/NOTIFY on one channel, whose payload
is the request's hash (never the id in the QR code). A wait also ends at its timeout and the
caller reads the store again, so a lost notification costs at most that timeout, never an answer.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

CHANNEL = "cert_verifier_scan"  # the PostgreSQL channel (an identifier: letters and underscores only)


class Signals:
    """Waiters per key in this process; ``wake`` sets them all."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    async def wait(self, key: str, timeout: float) -> None:
        """Until ``wake(key)`` or ``timeout`` seconds, whichever comes first."""
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[key]

    def wake(self, key: str) -> None:
        for event in self._waiting.get(key, ()):
            event.set()

    def waiting(self) -> int:
        """How many waits are open (for tests and health)."""
        return sum(len(events) for events in self._waiting.values())
