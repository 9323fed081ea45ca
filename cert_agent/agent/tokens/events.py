"""What the daemon tells pages about media: token and card events, and who is told."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cert_agent.agent.workers.protocol import TokenView
from cert_agent.drivers.models import MediumProblem

log = logging.getLogger("cert_agent.tokens")


@dataclass(frozen=True)
class CardEvent:
    """A card went into a reader (``cardInserted``, with its ATR), came out (``cardRemoved``),
    or is in a reader with no driver for it (``mediumWithoutDriver``, with the problem)."""

    name: str
    reader: str
    atr: bytes | None
    problem: MediumProblem | None = None


@dataclass(frozen=True)
class TokenEvent:
    """A token appeared (``tokenInserted``), went (``tokenRemoved``) or changed its PIN state
    (``tokenChanged``). ``view`` is None for a removal."""

    name: str
    token_id: str
    view: TokenView | None


Event = TokenEvent | CardEvent


class Subscribers:
    """The queues of the connections that listen; a full queue loses events, not the daemon."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._queues.discard(queue)

    def emit(self, event: Event) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that does not read loses events, not the daemon
                log.warning("event queue full; dropping %s for one subscriber", event.name)
