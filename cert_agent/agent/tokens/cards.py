"""Cards in readers that no driver shows a token for: the one judgement the daemon and
``cert-agent doctor`` share.

A card is driven when a token's reader name (as its library gives it) and the PC/SC reader name
contain one another (libraries shorten or extend the name pcscd uses). An undriven card is a
medium without its driver; the media catalog names the driver when it knows the ATR.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from cert_agent.agent.errors import MediumDriverMissing
from cert_agent.agent.tokens.events import CardEvent
from cert_agent.drivers.catalog import current_system, default_catalog
from cert_agent.drivers.models import MediumProblem
from cert_agent.drivers.pcsc import Cards

log = logging.getLogger("cert_agent.tokens")


def is_driven(reader: str, token_readers: Iterable[str]) -> bool:
    """A token of a loaded library sits in ``reader``."""
    return any(reader in r or r in reader for r in token_readers if r)


def medium_problem(reader: str, atr: bytes) -> MediumProblem:
    """A medium without its driver in ``reader``, with the catalog's driver for its ATR."""
    entry = default_catalog().for_atr(atr)
    return MediumProblem(
        reader,
        atr,
        MediumDriverMissing(reader),
        driver=entry.name if entry else None,
        driver_modules=entry.module_files(current_system()) if entry else (),
        medium=entry.medium if entry else None,
    )


def undriven(cards: Cards, token_readers: Iterable[str]) -> list[MediumProblem]:
    readers = list(token_readers)
    return [
        medium_problem(reader, atr)
        for reader, atr in sorted(cards.items())
        if atr is not None and not is_driven(reader, readers)
    ]


class CardWatch:
    """pcscd's word on readers and cards, the events it makes, and the media without a driver."""

    def __init__(self, emit: Callable[[CardEvent], None], request_scan: Callable[[], None]) -> None:
        self._emit = emit
        self._request_scan = request_scan
        self._cards: Cards = {}
        self.version = 0  # counts card changes, so a scan begun before one is not judged by it
        self.problems: tuple[MediumProblem, ...] = ()

    def on_cards(self, cards: Cards) -> None:
        """An event for every card that came or went, and a scan at once, so a new medium's
        token is found without waiting for the poll."""
        old, self._cards = self._cards, cards
        changed = False
        for reader in sorted(old.keys() | cards.keys()):
            before, now = old.get(reader), cards.get(reader)
            if before == now:
                continue
            changed = True
            if before is not None:
                self._emit(CardEvent("cardRemoved", reader, before))
            if now is not None:
                self._emit(CardEvent("cardInserted", reader, now))
        if changed:
            self.version += 1
            present = {(r, a) for r, a in cards.items() if a is not None}
            self.problems = tuple(p for p in self.problems if (p.reader, p.atr) in present)
            self._request_scan()

    def judge(self, token_readers: Iterable[str]) -> None:
        """After a scan that saw the cards as they are now: announce each newly undriven card."""
        problems = undriven(self._cards, token_readers)
        known = {(p.reader, p.atr) for p in self.problems}
        for problem in problems:
            if (problem.reader, problem.atr) not in known:
                log.warning("a medium in %s has no driver (ATR %s)", problem.reader, problem.atr.hex())
                self._emit(CardEvent("mediumWithoutDriver", problem.reader, problem.atr, problem))
        self.problems = tuple(problems)
