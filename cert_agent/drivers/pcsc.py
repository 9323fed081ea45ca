"""Readers and cards as pcscd sees them, pushed as they change (PC/SC hot-plug).

A thread waits in SCardGetStatusChange (a blocking call) on every reader and on pcsc-lite's
"\\\\?PnP?\\Notification" pseudo-reader, which wakes it when a reader is added or removed. Each
change is handed to the event loop as a snapshot ``{reader name: ATR or None}``. When pcscd is
absent or goes away, the thread waits and tries again with a growing pause (0.5 s doubling to
30 s; never a busy loop) and logs that once; the token poll goes on meanwhile, so tokens are
still found, only more slowly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cert_agent.pcsc")
PNP_READER = "\\\\?PnP?\\Notification"
WAIT_MS = 2000  # the longest a status wait lasts before the stop flag is looked at again
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 30.0

Cards = dict[str, bytes | None]  # reader -> the ATR of the card in it, or None when it is empty


class ReaderWatcher:
    def __init__(self, on_change: Callable[[Cards], None], loop: asyncio.AbstractEventLoop) -> None:
        self._on_change = on_change
        self._loop = loop
        self._stop = threading.Event()
        self._context: Any = None
        self._thread = threading.Thread(target=self._run, name="pcsc-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        from smartcard import scard

        self._stop.set()
        context = self._context
        if context is not None:
            scard.SCardCancel(context)  # wakes the thread out of its wait
        self._thread.join(timeout=5)

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        from smartcard import scard

        pause, reported = FIRST_PAUSE, False
        while not self._stop.is_set():
            result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if result == scard.SCARD_S_SUCCESS:
                self._context = context
                try:
                    self._watch(scard, context)
                    pause, reported = FIRST_PAUSE, False
                except PcscGone as exc:
                    if not reported:
                        log.warning("pcscd: %s; watching again with back-off, tokens still polled", exc)
                        reported = True
                finally:
                    self._context = None
                    scard.SCardReleaseContext(context)
            elif not reported:
                log.warning(
                    "pcscd is not reachable (%s); trying again with back-off", scard.SCardGetErrorMessage(result)
                )
                reported = True
            self._deliver({})  # no pcscd: no reader is known
            if self._stop.wait(pause):
                return
            pause = min(pause * 2, LONGEST_PAUSE)

    def _watch(self, scard: Any, context: Any) -> None:
        """Until pcscd goes away or stop() is called: report each change of readers or cards."""
        states = self._reader_states(scard, context, [])  # all unaware: the first wait answers at once
        while not self._stop.is_set():
            result, changed = scard.SCardGetStatusChange(context, WAIT_MS, states)
            if result == scard.SCARD_E_TIMEOUT:
                continue
            if result == scard.SCARD_E_CANCELLED:
                return
            if result != scard.SCARD_S_SUCCESS:
                raise PcscGone(scard.SCardGetErrorMessage(result))
            self._deliver(_cards(changed))
            states = [(r, s & ~scard.SCARD_STATE_CHANGED) for r, s, _ in changed]
            if any(r == PNP_READER and s & scard.SCARD_STATE_CHANGED for r, s, _ in changed):
                states = self._reader_states(scard, context, states)  # a reader came or went

    def _reader_states(self, scard: Any, context: Any, known: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The readers now, keeping what is known of those already watched (new ones start
        unaware, so the next wait reports their card at once)."""
        result, readers = scard.SCardListReaders(context, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE:
            readers = []
        elif result != scard.SCARD_S_SUCCESS:
            raise PcscGone(scard.SCardGetErrorMessage(result))
        previous = dict(known)
        pnp = previous.get(PNP_READER, scard.SCARD_STATE_UNAWARE)
        return [(r, previous.get(r, scard.SCARD_STATE_UNAWARE)) for r in readers] + [(PNP_READER, pnp)]

    def _deliver(self, cards: Cards) -> None:
        if not self._stop.is_set():
            self._loop.call_soon_threadsafe(self._on_change, cards)


def current_cards() -> Cards:
    """The readers and their cards now (one status query; empty when pcscd does not answer)."""
    from smartcard import scard

    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        return {}
    try:
        result, readers = scard.SCardListReaders(context, [])
        if result != scard.SCARD_S_SUCCESS or not readers:
            return {}
        result, states = scard.SCardGetStatusChange(context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers])
        return _cards(states) if result == scard.SCARD_S_SUCCESS else {}
    finally:
        scard.SCardReleaseContext(context)


class PcscGone(Exception):
    """pcscd stopped answering (stopped, restarted, or the context became invalid)."""


def _cards(states: list[Any]) -> Cards:
    """``{reader: ATR or None}`` from SCardGetStatusChange's ``(reader, state, ATR)`` answers
    (SCARD_STATE_PRESENT: a card is in it)."""
    from smartcard import scard

    return {
        reader: bytes(atr) if state & scard.SCARD_STATE_PRESENT and atr else None
        for reader, state, atr in states
        if reader != PNP_READER
    }
