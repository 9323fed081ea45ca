"""PIN accounting: whose turn it is, what a page may still spend, and what a medium's state is
after the PINs the daemon has seen.

Counts are kept here, in the daemon, per token and per token and origin, so that they survive a
worker restart; a right PIN starts them again. The tries-left arithmetic is
``drivers.retries`` (the one rule, fed by the medium, the media catalog and the configuration).
The daemon's own count never marks a medium locked: it shows the final try, and the next page's
PIN is held back (``PIN_TRIES_RESERVED``); only the medium's answer locks it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from cert_agent.agent.errors import PinTriesReserved
from cert_agent.agent.workers.protocol import TokenView
from cert_agent.drivers import retries
from cert_agent.drivers.errors import PinIncorrect, PinLocked
from cert_agent.drivers.models import PinState, Token

USER_ACTION = "cert-agent:local"  # the "origin" of the user's own PIN typed at cert-agent verify-pin
IN_USE_GRACE = 2.0  # seconds after a PIN operation during which the medium counts as in use


class PinAccounting:
    def __init__(self, configured_limit: int | None, origins: int) -> None:
        self._configured_limit = configured_limit
        self._origins = origins  # how many origins may use the agent (for each one's share)
        self._turns: dict[str, asyncio.Lock] = {}
        self._wrong: dict[str, int] = {}  # consecutive wrong PINs by token
        self._wrong_by_origin: dict[tuple[str, str], int] = {}  # the same, by token and origin
        self._locked: set[str] = set()  # tokens whose library answered "PIN locked"
        self._last_use: dict[str, float] = {}

    def turn(self, token_id: str) -> asyncio.Lock:
        """Held around each PIN-bearing request for ``token_id``: one at a time reaches the token,
        in the order they came, and each is admitted only once the one before it has its answer
        (so a burst is judged on the outcomes, not on guesses)."""
        lock = self._turns.get(token_id)
        if lock is None:
            lock = self._turns[token_id] = asyncio.Lock()
        return lock

    def wrong_in_a_row(self, token_id: str, origin: str | None = None) -> int:
        if origin is None:
            return self._wrong.get(token_id, 0)
        return self._wrong_by_origin.get((token_id, origin), 0)

    def retry_limit(self, token: Token) -> int | None:
        return retries.retry_limit(token, self._configured_limit)

    def tries_left(self, token: Token, reported: int | None) -> int | None:
        return retries.tries_left(reported, self.retry_limit(token), self.wrong_in_a_row(token.token_id))

    def origin_share(self, token: Token) -> int | None:
        """How many wrong PINs in a row one origin may spend on this medium (None: its limit is
        unknown). With n allowed origins, the others' shares add up to at most limit - 2."""
        limit = self.retry_limit(token)
        if limit is None:
            return None
        others = self._origins - 1
        if others < 1:
            return max(1, limit - 1)
        return max(1, (limit - 2) // others)

    def admit(self, token: Token, origin: str) -> None:
        """Refuse (PinTriesReserved) a PIN from ``origin`` that could cost tries it may not spend.

        Called inside the token's turn, so the counts are exact. Where the medium's retry limit
        is known (the medium, the catalog, the configuration, or its final-try state):
        - no page ever spends the last try: with one try left only the user's own action
          (``cert-agent verify-pin``, origin ``USER_ACTION``) may present a PIN;
        - each origin may spend at most its share of the tries in a row, so that the other
          configured origins together always leave at least two: one origin's wrong PINs can
          never make another origin's right PIN wait (``docs/threat-model.md``)."""
        if origin == USER_ACTION:
            return
        reported = token.pin.tries_left if token.pin_state is not PinState.LOCKED else None
        left = self.tries_left(token, reported)
        if left is not None and left <= 1:
            raise PinTriesReserved(token.token_id, triesLeft=left)
        share = self.origin_share(token)
        if share is not None and self.wrong_in_a_row(token.token_id, origin) >= share:
            raise PinTriesReserved(token.token_id, triesLeft=left)

    def wrong_pin(self, token: Token, origin: str, exc: PinIncorrect) -> PinIncorrect | PinLocked:
        """Count a wrong PIN; the error the page gets (PinLocked once the known limit is reached)."""
        token_id = token.token_id
        self._wrong[token_id] = self._wrong.get(token_id, 0) + 1
        key = (token_id, origin)
        self._wrong_by_origin[key] = self._wrong_by_origin.get(key, 0) + 1
        limit = self.retry_limit(token)
        if limit is not None and self._wrong[token_id] >= limit:
            return PinLocked(exc.detail)  # the medium's known limit is reached
        return PinIncorrect(exc.detail, tries_left=self.tries_left(token, exc.tries_left))

    def locked(self, token_id: str) -> None:
        """The library said the PIN is locked, whatever its flags say."""
        self._locked.add(token_id)

    def right_pin(self, token_id: str) -> None:
        """The counts start again, and a lock only a return code told of is over (unlocked
        elsewhere: a vendor tool, a lockout reset). A request still goes to a token believed
        locked (it refuses without counting), so this is noticed."""
        self._wrong.pop(token_id, None)
        for key in [key for key in self._wrong_by_origin if key[0] == token_id]:
            del self._wrong_by_origin[key]
        self._locked.discard(token_id)

    def used(self, token_id: str) -> None:
        self._last_use[token_id] = time.monotonic()

    def in_use(self, token_id: str) -> bool:
        """A PIN operation is under way on the token, or ended less than IN_USE_GRACE ago (a
        scan that began while the medium was being written may finish after the operation)."""
        turn = self._turns.get(token_id)
        if turn is not None and turn.locked():
            return True
        return time.monotonic() - self._last_use.get(token_id, -IN_USE_GRACE) < IN_USE_GRACE

    def shown(self, view: TokenView) -> TokenView:
        """The token as pages see it: locked when its library's answer said so, even where its
        flags do not (tpm2-pkcs11 never sets them); at its final try when the wrong PINs in a row
        leave one try of the known limit (the PIN field stays)."""
        token = view.token
        if token.pin_state is PinState.LOCKED:
            return view
        if view.token_id in self._locked:
            return replace(view, token=token.with_pin_state(PinState.LOCKED))
        limit = self.retry_limit(token)
        if limit is not None and self.wrong_in_a_row(view.token_id) >= limit - 1:
            return replace(view, token=token.with_pin_state(PinState.FINAL_TRY))
        return view
