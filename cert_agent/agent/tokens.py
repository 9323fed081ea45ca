"""The daemon's view of the tokens: worker processes, a cached scan, and token events.

``TokenService`` owns the worker processes (one per PKCS#11 module, see ``worker.py``), keeps the
latest scan of tokens and certificates, scans again every ``poll_interval`` seconds (and at once
after a PIN operation), and tells subscribers when a token appears, disappears or changes state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, replace

from cert_agent.agent.config import AgentConfig
from cert_agent.agent.errors import MediumDriverMissing, PinTriesReserved, TokenTimeout, WorkerFailed
from cert_agent.agent.pcsc import Cards, ReaderWatcher
from cert_agent.agent.worker_protocol import (
    ChangePin,
    Scan,
    ScanResult,
    Sign,
    TokenView,
    VerifyPin,
)
from cert_agent.agent.workerproc import WorkerProcess
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.catalog import current_system, default_catalog
from cert_agent.drivers.errors import PinIncorrect, PinLocked, TokenNotFound, TokenNotPresent
from cert_agent.drivers.models import (
    CKF_USER_PIN_FINAL_TRY,
    CKF_USER_PIN_LOCKED,
    MediumProblem,
    ModuleProblem,
    PinState,
)
from cert_agent.drivers.pin import Pin

log = logging.getLogger("cert_agent.tokens")
REMOVAL_SCANS = 2  # consecutive scans that must miss a token before it counts as removed
IN_USE_GRACE = 2.0  # seconds after a PIN operation during which a scan's miss does not count
SCAN_WAIT = 2.0  # seconds a scan waits for a module's answer before publishing the others' news
USER_ACTION = "cert-agent:local"  # the "origin" of the user's own PIN typed at cert-agent verify-pin


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


class TokenService:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._workers: dict[str, WorkerProcess] = {}  # by module
        self._unloadable: dict[str, tuple[ModuleProblem, ...]] = {}  # modules that failed to load
        self._scans: dict[str, asyncio.Task[ScanResult | None]] = {}  # by module, under way
        self._tokens: dict[str, TokenView] = {}
        self._problems: tuple[ModuleProblem, ...] = ()
        self._subscribers: set[asyncio.Queue[TokenEvent | CardEvent]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._missed: dict[str, int] = {}
        self._wrong_pins: dict[str, int] = {}  # consecutive wrong PINs by token, across worker restarts
        self._wrong_by_origin: dict[tuple[str, str], int] = {}  # the same, by token and origin
        self._pin_gates: dict[str, asyncio.Lock] = {}
        self._last_pin_use: dict[str, float] = {}
        self._locked: set[str] = set()  # tokens a module's CKR_PIN_LOCKED said are locked
        self._cards: Cards = {}  # reader -> ATR of its card (None: empty), as pcscd last said
        self._cards_version = 0  # counts card changes, so a scan begun before one is not judged by it
        self._medium_problems: tuple[MediumProblem, ...] = ()
        self._watcher: ReaderWatcher | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh(wait=self._config.operation_timeout)  # the first scan: what is there
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
        for scan in self._scans.values():
            scan.cancel()
        for key in list(self._workers):
            self._discard(key)

    # --- what pages see -----------------------------------------------------------------------

    def tokens(self) -> list[TokenView]:
        return [self._shown(view) for view in self._tokens.values()]

    def problems(self) -> tuple[ModuleProblem | MediumProblem, ...]:
        return self._problems + self._medium_problems

    def token(self, token_id: str) -> TokenView:
        token = self._tokens.get(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        return self._shown(token)

    def has_pin_pad(self, token_id: str) -> bool:
        """The token takes its PIN on the reader's keypad (False for a token not known)."""
        view = self._tokens.get(token_id)
        return view is not None and view.token.pin_pad

    def subscribe(self) -> asyncio.Queue[TokenEvent | CardEvent]:
        queue: asyncio.Queue[TokenEvent | CardEvent] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[TokenEvent | CardEvent]) -> None:
        self._subscribers.discard(queue)

    def worker_pids(self) -> dict[str, list[int]]:
        """Process ids of the workers, by module and by the token ids each serves: for status
        and tests."""
        pids = {module: [w.pid] for module, w in self._workers.items() if w.pid is not None}
        for token_id, view in self._tokens.items():
            if view.token.module in pids:
                pids[token_id] = pids[view.token.module]
        return pids

    # --- token operations (each in its module's worker, on the token's own thread) ------------

    def pin_gate(self, token_id: str) -> asyncio.Lock:
        """Held around each PIN-bearing request for ``token_id``: one at a time reaches the token,
        in the order they came, and each is admitted by the rate limits only once the one before
        it has its answer (so a burst is judged on the outcomes, not on guesses)."""
        gate = self._pin_gates.get(token_id)
        if gate is None:
            gate = self._pin_gates[token_id] = asyncio.Lock()
        return gate

    def admit_pin(self, token_id: str, origin: str) -> None:
        """Refuse (PinTriesReserved) a PIN from ``origin`` that could cost tries it may not spend.

        Called inside the token's PIN gate, so the counts are exact. Where the medium's retry
        limit is known (the catalog, the configuration, or its own final-try flag):
        - no page ever spends the last try: with one try left only the user's own action
          (``cert-agent verify-pin``, origin ``USER_ACTION``) may present a PIN;
        - each origin may spend at most its share of the tries in a row, so that the other
          configured origins together always leave at least two: one origin's wrong PINs can
          never make another origin's right PIN wait (``docs/threat-model.md``)."""
        if origin == USER_ACTION:
            return
        left = self.tries_left(token_id, self._reported_tries(token_id))
        if left is not None and left <= 1:
            raise PinTriesReserved(token_id, triesLeft=left)
        share = self.origin_share(token_id)
        if share is not None and self._wrong_by_origin.get((token_id, origin), 0) >= share:
            raise PinTriesReserved(token_id, triesLeft=left)

    def origin_share(self, token_id: str) -> int | None:
        """How many wrong PINs in a row one origin may spend on this medium (None: its limit is
        unknown). With n allowed origins, the others' shares add up to at most limit - 2."""
        limit = self.retry_limit(token_id)
        if limit is None:
            return None
        others = len(self._config.allowed_origins) - 1
        if others < 1:
            return max(1, limit - 1)
        return max(1, (limit - 2) // others)

    def _reported_tries(self, token_id: str) -> int | None:
        view = self._tokens.get(token_id)
        return 1 if view is not None and view.token.flags & CKF_USER_PIN_FINAL_TRY else None

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

    def retry_limit(self, token_id: str) -> int | None:
        """How many wrong PINs in a row lock this medium: the media catalog's word for it, else
        the configured ``pin_max_tries`` (None: unknown)."""
        view = self._tokens.get(token_id)
        if view is not None:
            token = view.token
            entry = default_catalog().for_token(token.module, token.manufacturer, token.model)
            if entry is not None and entry.pin_max_tries is not None:
                return entry.pin_max_tries
        return self._config.pin_max_tries

    def tries_left(self, token_id: str, reported: int | None) -> int | None:
        """Tries left before the medium locks: the token's own word (its flags) or the
        configured limit less the wrong PINs this daemon saw in a row, whichever is lower."""
        known = [] if reported is None else [reported]
        limit = self.retry_limit(token_id)
        if limit is not None:
            left = limit - self._wrong_pins.get(token_id, 0)
            if left >= 1:
                known.append(left)
        return min(known) if known else None

    async def _with_pin(self, request: VerifyPin | ChangePin | Sign, origin: str) -> ScanResult | bytes | None:
        """A PIN-bearing call in the token's module worker. Wrong PINs are counted here, per token
        and per origin, so that the count survives a worker restart; a right PIN starts both
        counts again. The daemon's own count never marks a medium locked (only the medium's
        answer or flags do): it shows the final try, and the next PIN is held back."""
        token_id = request.token_id
        self.admit_pin(token_id, origin)
        shown_before = self._shown_state(token_id)
        try:
            result = await self._call(token_id, request)
        except PinIncorrect as exc:
            self._wrong_pins[token_id] = self._wrong_pins.get(token_id, 0) + 1
            key = (token_id, origin)
            self._wrong_by_origin[key] = self._wrong_by_origin.get(key, 0) + 1
            self.request_scan()
            limit = self.retry_limit(token_id)
            if limit is not None and self._wrong_pins[token_id] >= limit:
                raise PinLocked(exc.detail) from None  # the medium's known limit is reached
            raise PinIncorrect(exc.detail, tries_left=self.tries_left(token_id, exc.tries_left)) from None
        except PinLocked:
            self._locked.add(token_id)  # the module said CKR_PIN_LOCKED, whatever the flags say
            self.request_scan()
            raise
        else:
            # A right PIN: the counts start again, and a lock only a return code told us of is
            # over (unlocked elsewhere: a vendor tool, a lockout reset). A request still goes to
            # a token believed locked (it refuses without counting), so this is noticed.
            self._wrong_pins.pop(token_id, None)
            for key in [key for key in self._wrong_by_origin if key[0] == token_id]:
                del self._wrong_by_origin[key]
            self._locked.discard(token_id)
            return result
        finally:
            self._last_pin_use[token_id] = time.monotonic()  # the medium was just used (see _in_use)
            self._announce_if_changed(token_id, shown_before)

    def _shown_state(self, token_id: str) -> PinState | None:
        view = self._tokens.get(token_id)
        return None if view is None else self._shown(view).token.pin_state

    def _announce_if_changed(self, token_id: str, before: PinState | None) -> None:
        """Push tokenChanged when the PIN state pages see moved (final try, locked, back to ok)
        because of what the daemon counted or a module answered, not a token flag a scan sees."""
        view = self._tokens.get(token_id)
        if view is not None and before is not None and self._shown(view).token.pin_state != before:
            self._emit(TokenEvent("tokenChanged", token_id, self._shown(view)))

    def _shown(self, view: TokenView) -> TokenView:
        """The token as pages see it: locked when a module's answer said so, even where the
        token's flags do not (tpm2-pkcs11 never sets them); at its final try when the daemon's
        count of wrong PINs in a row leaves one try of the known limit (the PIN field stays)."""
        if view.token.pin_state is PinState.LOCKED:
            return view
        if view.token_id in self._locked:
            return replace(view, token=replace(view.token, flags=view.token.flags | CKF_USER_PIN_LOCKED))
        limit = self.retry_limit(view.token_id)
        if limit is not None and self._wrong_pins.get(view.token_id, 0) >= limit - 1:
            return replace(view, token=replace(view.token, flags=view.token.flags | CKF_USER_PIN_FINAL_TRY))
        return view

    # --- scanning -----------------------------------------------------------------------------

    def request_scan(self) -> None:
        self._wake.set()

    async def refresh(self, wait: float = SCAN_WAIT) -> None:
        """Scan every module now (or wait for the scan under way) and publish what changed.

        A module's scan that takes longer than ``wait`` seconds (a module stuck on a medium, a
        slow card read) goes on, and is not sent again while it does: its module keeps its tokens
        as they were until its answer comes, and the other modules' news is published now."""
        if self._scan_lock.locked():
            async with self._scan_lock:  # a scan is under way: what it publishes is as fresh
                return
        async with self._scan_lock:
            cards_version = self._cards_version
            modules = list(dict.fromkeys(self._config.modules))
            for module in modules:
                if module not in self._scans:
                    self._scans[module] = asyncio.create_task(self._scan(module), name=f"scan {module}")
            await asyncio.wait([self._scans[m] for m in modules], timeout=wait)
            views: list[TokenView] = []
            problems: list[ModuleProblem] = []
            silent: set[str] = set()
            for module in modules:
                result = self._finished_scan(module)
                if result is None:
                    silent.add(module)
                    continue
                views.extend(result.tokens)
                problems.extend(result.problems)
            self._publish(ScanResult(tuple(views), tuple(problems)), silent)
            if cards_version == self._cards_version:  # the scan saw the cards as they are now
                self._judge_cards()

    def _finished_scan(self, module: str) -> ScanResult | None:
        """The module's scan result if its scan has ended (and then forgotten), else None."""
        scan = self._scans[module]
        if not scan.done():
            return None
        del self._scans[module]
        if scan.cancelled():
            return None
        if scan.exception() is not None:
            log.warning("scanning module %s failed: %s", module, scan.exception())
            return None
        return scan.result()

    async def _scan(self, module: str) -> ScanResult | None:
        """One module's tokens, or None when its worker did not answer. A module that did not
        load is not kept running: its problem is reported from then on."""
        if module in self._unloadable:
            return ScanResult((), self._unloadable[module])
        try:
            result = await self._worker(module).call(Scan(), timeout=self._config.operation_timeout)
        except TimeoutError:
            log.warning("module %s did not answer a scan within %ss", module, self._config.operation_timeout)
            return None
        except WorkerFailed:
            log.warning("the worker of module %s died; it will be restarted", module)
            return None
        if not isinstance(result, ScanResult):
            return None
        if any(problem.module == module for problem in result.problems):  # it did not load
            self._unloadable[module] = result.problems
            self._discard(module)
        return result

    # --- readers and cards (PC/SC) -------------------------------------------------------------

    def on_cards(self, cards: Cards) -> None:
        """pcscd's word on readers and cards (from the watcher): an event for every card that
        came or went, and a scan at once, so a new medium's token is found without waiting for
        the poll."""
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
            self._cards_version += 1
            present = {(r, a) for r, a in cards.items() if a is not None}
            self._medium_problems = tuple(p for p in self._medium_problems if (p.reader, p.atr) in present)
            self.request_scan()

    def _judge_cards(self) -> None:
        """A card that no loaded module shows a token for (by the slot's reader name) is a
        medium without its driver; the catalog names the driver when it knows the ATR."""
        problems = []
        readers = [view.token.reader for view in self._tokens.values() if view.token.reader]
        for reader, atr in sorted(self._cards.items()):
            if atr is None or any(reader in r or r in reader for r in readers):
                continue
            entry = default_catalog().for_atr(atr)
            problems.append(
                MediumProblem(
                    reader,
                    atr,
                    MediumDriverMissing(reader),
                    driver=entry.name if entry else None,
                    driver_modules=entry.module_files(current_system()) if entry else (),
                    medium=entry.medium if entry else None,
                )
            )
        known = {(p.reader, p.atr) for p in self._medium_problems}
        for problem in problems:
            if (problem.reader, problem.atr) not in known:
                log.warning("a medium in %s has no driver (ATR %s)", problem.reader, problem.atr.hex())
                self._emit(CardEvent("mediumWithoutDriver", problem.reader, problem.atr, problem))
        self._medium_problems = tuple(problems)

    async def _poll(self) -> None:
        while not self._stopping:  # checked as well as cancelled: a wake-up racing a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except CertAgentError as exc:
                log.warning("token scan failed: %s", exc.describe())
            except Exception:  # the poller must survive anything a module does
                log.exception("token scan failed")

    def _publish(self, result: ScanResult, silent: set[str]) -> None:
        new = {view.token_id: view for view in result.tokens}
        seen = set(new)
        old = self._tokens
        for token_id, view in old.items():
            if view.token.module in silent and token_id not in new:
                new[token_id] = view  # its module did not answer: nothing is known, nothing changes
                seen.add(token_id)
        # A token counts as removed only when two scans in a row miss it, and never while a PIN
        # operation is under way on it: a medium being written (SoftHSM2 rewrites its store after
        # a wrong PIN) can be missed by a re-initialization, and a glitch must not kill the worker
        # of a token that is still there.
        for token_id in old.keys() - new.keys():
            if self._in_use(token_id):
                new[token_id] = old[token_id]  # its worker is talking to it: it is there
                continue
            self._missed[token_id] = self._missed.get(token_id, 0) + 1
            if self._missed[token_id] < REMOVAL_SCANS:
                new[token_id] = old[token_id]
        for token_id in seen:
            self._missed.pop(token_id, None)
        self._tokens, self._problems = new, result.problems
        for token_id in old.keys() - new.keys():
            self._missed.pop(token_id, None)
            log.info("token removed: %s", old[token_id].token.serial)
            self._emit(TokenEvent("tokenRemoved", token_id, None))
        for token_id in new.keys() - old.keys():
            log.info("token inserted: %s (%s)", new[token_id].token.serial, new[token_id].token.medium.value)
            self._emit(TokenEvent("tokenInserted", token_id, self._shown(new[token_id])))
        for token_id in new.keys() & old.keys():
            if new[token_id].token.pin_state != old[token_id].token.pin_state:
                self._emit(TokenEvent("tokenChanged", token_id, self._shown(new[token_id])))

    def _in_use(self, token_id: str) -> bool:
        """A PIN operation is under way on the token, or ended less than IN_USE_GRACE ago (a
        scan that began while the medium was being written may finish after the operation)."""
        gate = self._pin_gates.get(token_id)
        if gate is not None and gate.locked():
            return True
        return time.monotonic() - self._last_pin_use.get(token_id, -IN_USE_GRACE) < IN_USE_GRACE

    def _emit(self, event: TokenEvent | CardEvent) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that does not read loses events, not the daemon
                log.warning("event queue full; dropping %s for one subscriber", event.name)

    # --- workers ------------------------------------------------------------------------------

    async def _call(self, token_id: str, request: VerifyPin | ChangePin | Sign) -> ScanResult | bytes | None:
        view = self._tokens.get(token_id)
        if view is None:
            raise TokenNotFound(token_id)
        module = view.token.module
        try:
            return await self._worker(module).call(request, timeout=self._config.operation_timeout)
        except TimeoutError:
            # The call goes on in the token's own thread of the worker; nothing is killed (a
            # module killed mid-write can tear the medium's store, and the worker serves other
            # tokens). The token's next requests wait behind it, each at most the same time.
            log.warning("token %s did not answer within %ss", token_id, self._config.operation_timeout)
            raise TokenTimeout(token_id) from None
        except WorkerFailed:
            # Not discarded here: several calls learn of one death, and by the time one of them
            # runs this, a new worker may serve the module. The next call replaces a dead one.
            log.warning("the worker of module %s died; it will be restarted", module)
            if token_id not in self._tokens:
                raise TokenNotPresent(token_id) from None
            raise

    def _worker(self, module: str) -> WorkerProcess:
        worker = self._workers.get(module)
        if worker is None or not worker.alive:
            if worker is not None:
                worker.kill()
            worker = WorkerProcess(os.path.basename(module), module)
            self._workers[module] = worker
        return worker

    def _discard(self, key: str) -> None:
        worker = self._workers.pop(key, None)
        if worker is not None:
            worker.kill()
