"""The tokens the daemon believes present, and when a token counts as removed.

A scan's result replaces the registry's view, with two exceptions that keep a present medium
from being dropped by a glitch: a library that did not answer keeps its tokens as they were,
and a token counts as removed only when ``REMOVAL_SCANS`` scans in a row miss it, and never while
a PIN operation is under way on it (SoftHSM2 rewrites its store after a wrong PIN, and a
re-initialization meanwhile can miss it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cert_agent.agent.tokens.events import TokenEvent
from cert_agent.agent.workers.protocol import TokenView

log = logging.getLogger("cert_agent.tokens")
REMOVAL_SCANS = 2  # consecutive scans that must miss a token before it counts as removed


class TokenRegistry:
    def __init__(self, in_use: Callable[[str], bool]) -> None:
        self._in_use = in_use
        self.views: dict[str, TokenView] = {}
        self._missed: dict[str, int] = {}

    def get(self, token_id: str) -> TokenView | None:
        return self.views.get(token_id)

    def publish(self, found: list[TokenView], silent: set[str]) -> list[TokenEvent]:
        """Take a scan's tokens (``silent``: the libraries that did not answer); the events for
        what changed, with the raw views (the service shows them)."""
        new = {view.token_id: view for view in found}
        seen = set(new)
        old = self.views
        for token_id, view in old.items():
            if view.token.module in silent and token_id not in new:
                new[token_id] = view  # its library did not answer: nothing is known, nothing changes
                seen.add(token_id)
        for token_id in old.keys() - new.keys():
            if self._in_use(token_id):
                new[token_id] = old[token_id]  # its worker is talking to it: it is there
                continue
            self._missed[token_id] = self._missed.get(token_id, 0) + 1
            if self._missed[token_id] < REMOVAL_SCANS:
                new[token_id] = old[token_id]
        for token_id in seen:
            self._missed.pop(token_id, None)
        self.views = new
        events = []
        for token_id in old.keys() - new.keys():
            self._missed.pop(token_id, None)
            log.info("token removed: %s", old[token_id].token.serial)
            events.append(TokenEvent("tokenRemoved", token_id, None))
        for token_id in new.keys() - old.keys():
            log.info("token inserted: %s (%s)", new[token_id].token.serial, new[token_id].token.medium.value)
            events.append(TokenEvent("tokenInserted", token_id, new[token_id]))
        for token_id in new.keys() & old.keys():
            if new[token_id].token.pin_state != old[token_id].token.pin_state:
                events.append(TokenEvent("tokenChanged", token_id, new[token_id]))
        return events
