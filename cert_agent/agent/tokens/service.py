"""The daemon's view of the media, in front of its parts: what pages see and do with tokens.

``TokenService`` scans every ``poll_interval`` seconds (at once after a PIN operation or a card
change), keeps the latest tokens and certificates, admits and counts PINs, and tells subscribers
when a token appears, disappears or changes state. The jobs are done by its parts:

- ``workers.WorkerPool``: the worker processes, one per library, and scans with time-outs;
- ``registry.TokenRegistry``: which tokens are present, and when one counts as removed;
- ``pins.PinAccounting``: turns, wrong-PIN counts, the last try and each origin's share;
- ``cards.CardWatch``: pcscd's cards, and the media without a driver;
- ``events.Subscribers``: who is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cert_agent.agent.config import AgentConfig
from cert_agent.agent.errors import WorkerFailed
from cert_agent.agent.tokens.cards import CardWatch
from cert_agent.agent.tokens.events import Event, Subscribers, TokenEvent
from cert_agent.agent.tokens.pins import PinAccounting
from cert_agent.agent.tokens.registry import TokenRegistry
from cert_agent.agent.tokens.workers import WorkerPool
from cert_agent.agent.workers.protocol import ChangePin, ScanResult, Sign, TokenView, VerifyPin
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.errors import PinIncorrect, PinLocked, TokenNotFound, TokenNotPresent
from cert_agent.drivers.models import LibraryProblem, MediumProblem, PinState
from cert_agent.drivers.pcsc import Cards, ReaderWatcher
from cert_agent.drivers.pin import Pin

log = logging.getLogger("cert_agent.tokens")
SCAN_WAIT = 2.0  # seconds a scan waits for a library's answer before publishing the others' news


class TokenService:
    """Tokens as pages see them, and the PIN operations on them (see the module docstring)."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._events = Subscribers()
        self._workers = WorkerPool(config.operation_timeout)
        self._pins = PinAccounting(config.pin_max_tries, len(config.allowed_origins))
        self._registry = TokenRegistry(self._pins.in_use)
        self._cards = CardWatch(self._events.emit, self.request_scan)
        self._problems: tuple[LibraryProblem, ...] = ()
        self._poller: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._scanned_at: float | None = None  # when the last completed scan began (loop time)
        self._stopping = False
        self._watcher: ReaderWatcher | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.scan_now(wait=self._config.operation_timeout)  # the first scan: what is there
        self._poller = asyncio.create_task(self._poll(), name="token-poller")
        if self._config.watch_readers:
            self._watcher = ReaderWatcher(self.on_cards, asyncio.get_running_loop())
            self._watcher.start()

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._workers.stop()

    # --- what pages see -----------------------------------------------------------------------

    def tokens(self) -> list[TokenView]:
        return [self._pins.shown(view) for view in self._registry.views.values()]

    def problems(self) -> tuple[LibraryProblem | MediumProblem, ...]:
        return self._problems + self._cards.problems

    def token(self, token_id: str) -> TokenView:
        return self._pins.shown(self._view(token_id))

    def has_pin_pad(self, token_id: str) -> bool:
        """The token takes its PIN on the reader's keypad (False for a token not known)."""
        view = self._registry.get(token_id)
        return view is not None and view.token.pin_pad

    def subscribe(self) -> asyncio.Queue[Event]:
        return self._events.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._events.unsubscribe(queue)

    def worker_pids(self) -> dict[str, list[int]]:
        """Process ids of the workers, by library and by the token ids each serves: for status
        and tests."""
        pids = {module: [pid] for module, pid in self._workers.pids().items()}
        for token_id, view in self._registry.views.items():
            if view.token.module in pids:
                pids[token_id] = pids[view.token.module]
        return pids

    def wrong_in_a_row(self, token_id: str) -> int:
        """Wrong PINs in a row the daemon has seen on the token (for status and tests)."""
        return self._pins.wrong_in_a_row(token_id)

    # --- PIN operations (each in its library's worker, on the token's own lane) -----------------

    def pin_turn(self, token_id: str) -> asyncio.Lock:
        """Held around each PIN-bearing request for the token (``PinAccounting.turn``)."""
        return self._pins.turn(token_id)

    async def verify_pin(self, token_id: str, pin: Pin | None, origin: str) -> None:
        await self._with_pin(VerifyPin(token_id, pin), origin)
        self.request_scan()  # a PIN to be changed or a count-low flag may have cleared

    async def change_pin(self, token_id: str, old: Pin | None, new: Pin | None, origin: str) -> None:
        await self._with_pin(ChangePin(token_id, old, new), origin)
        self.request_scan()

    async def sign(
        self, token_id: str, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm, origin: str
    ) -> bytes:
        signature = await self._with_pin(Sign(token_id, cert_id, pin, data, algorithm), origin)
        if not isinstance(signature, bytes):
            raise WorkerFailed(f"{token_id}: no signature in the reply")
        return signature

    async def _with_pin(self, request: VerifyPin | ChangePin | Sign, origin: str) -> ScanResult | bytes | None:
        """A PIN-bearing call in the token's worker, admitted and counted by ``PinAccounting``;
        a tokenChanged event when the state pages see moved because of it."""
        token_id = request.token_id
        token = self._view(token_id).token
        self._pins.admit(token, origin)
        before = self.token(token_id).token.pin_state
        try:
            result = await self._workers.call(token.module, token_id, request)
        except PinIncorrect as exc:
            self.request_scan()
            raise self._pins.wrong_pin(token, origin, exc) from None
        except PinLocked:
            self._pins.locked(token_id)
            self.request_scan()
            raise
        except WorkerFailed:
            if token_id not in self._registry.views:
                raise TokenNotPresent(token_id) from None
            raise
        else:
            self._pins.right_pin(token_id)
            return result
        finally:
            self._pins.used(token_id)  # the medium was just used (see PinAccounting.in_use)
            self._announce_if_changed(token_id, before)

    def _announce_if_changed(self, token_id: str, before: PinState) -> None:
        """Push tokenChanged when the PIN state pages see moved (final try, locked, back to ok)
        because of what the daemon counted or a library answered, not a state a scan sees."""
        view = self._registry.get(token_id)
        if view is not None and self._pins.shown(view).token.pin_state != before:
            self._events.emit(TokenEvent("tokenChanged", token_id, self._pins.shown(view)))

    def _view(self, token_id: str) -> TokenView:
        view = self._registry.get(token_id)
        if view is None:
            raise TokenNotFound(token_id)
        return view

    # --- scanning -----------------------------------------------------------------------------

    def request_scan(self) -> None:
        self._wake.set()

    async def up_to_date(self) -> None:
        """Make the tokens what a page may list now: as the last scan saw them when that scan is
        fresh (it began within the last ``poll_interval`` seconds and nothing has asked for
        another since: a PIN operation, a card change), else after a scan now. The poller keeps
        them fresh, and pages hear of every change it finds as an event, so a page listing
        certificates costs no library call when nothing changed."""
        age = None if self._scanned_at is None else asyncio.get_running_loop().time() - self._scanned_at
        if self._wake.is_set() or age is None or age > self._config.poll_interval:
            await self.scan_now()

    async def scan_now(self, wait: float = SCAN_WAIT) -> None:
        """Scan every library now (or wait for the scan under way) and publish what changed.

        A library whose scan takes longer than ``wait`` seconds keeps its tokens as they were
        until its answer comes (``WorkerPool.scan``); the other libraries' news is published now."""
        if self._scan_lock.locked():
            async with self._scan_lock:  # a scan is under way: what it publishes is as fresh
                return
        async with self._scan_lock:
            cards_version = self._cards.version
            began = asyncio.get_running_loop().time()
            results, silent = await self._workers.scan(list(dict.fromkeys(self._config.modules)), wait)
            views = [view for result in results for view in result.tokens]
            self._problems = tuple(problem for result in results for problem in result.problems)
            for event in self._registry.publish(views, silent):
                shown = self._pins.shown(event.view) if event.view is not None else None
                self._events.emit(TokenEvent(event.name, event.token_id, shown))
            if cards_version == self._cards.version:  # the scan saw the cards as they are now
                self._cards.judge(view.token.reader for view in self._registry.views.values())
            if not silent:  # every library answered: the tokens are as of ``began``
                self._scanned_at = began

    def on_cards(self, cards: Cards) -> None:
        """pcscd's word on readers and cards (from the watcher), see ``CardWatch.on_cards``."""
        self._cards.on_cards(cards)

    async def _poll(self) -> None:
        while not self._stopping:  # checked as well as cancelled: a wake-up racing a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.scan_now()
            except CertAgentError as exc:
                log.warning("token scan failed: %s", exc.describe())
            except Exception:  # the poller must survive anything a library does
                log.exception("token scan failed")
