"""The PKCS#11 driver: media behind PKCS#11 modules, through python-pkcs11.

One :class:`Pkcs11Driver` loads one or more PKCS#11 modules and implements
:class:`~cert_agent.drivers.interface.TokenDriver`. Beside the rules every driver keeps, its own:

- the modules are initialized for threads (``library.Library``) and python-pkcs11 releases the
  GIL during every call, so one token's slow call holds up only the callers of that token;
- every call for one token holds that token's lock, so the PKCS#11 login state (shared by all
  sessions of a token) never mixes two operations;
- every operation opens its own session and, when it logged in, logs out before it returns;
- a PIN is passed from its own buffer to C_Login / C_SetPIN and nowhere else.

The parts: ``returncodes`` (CK_RV -> typed errors), ``sharing`` (a module shared by calls, alone
for re-initialization), ``discovery`` (slots and tokens), ``tokeninfo`` (token flags -> PIN
status), ``objects`` (certificates and keys), ``mechanisms`` (algorithms -> mechanisms),
``library`` (the calls made through the module's own function list).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from cert_agent.common.algorithms import KeyType, SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.catalog import Sm2OverPkcs11, default_catalog
from cert_agent.drivers.errors import (
    CertificateNotFound,
    DeviceError,
    DeviceRemoved,
    MechanismNotSupported,
    ModuleLoadFailed,
    PinIncorrect,
    PinLocked,
    PinRequired,
    Pkcs11Failure,
    PrivateKeyNotFound,
)
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.models import LibraryProblem, PinState, PinStatus, Token, TokenCertificate
from cert_agent.drivers.pin import Pin, check_new_pin, pin_buffer
from cert_agent.drivers.pkcs11 import objects
from cert_agent.drivers.pkcs11.discovery import Discovery
from cert_agent.drivers.pkcs11.library import Library, ReturnCode
from cert_agent.drivers.pkcs11.mechanisms import plan_signature
from cert_agent.drivers.pkcs11.returncodes import CKR, PKCS11_ERRORS, ckr_name, pkcs11_errors, return_code, translate
from cert_agent.drivers.pkcs11.sharing import ModuleSharing
from cert_agent.drivers.sm2 import raw_to_der

log = logging.getLogger("cert_agent.pkcs11")

RESCAN_WAIT = 0.5  # seconds a re-initialization waits for the calls under way on its module
RESCAN_TRIES = 5


class Pkcs11Driver(TokenDriver):
    """Media behind PKCS#11 modules (see the module docstring for the rules it keeps)."""

    def __init__(self, modules: Sequence[str]) -> None:
        """Load ``modules``; one that fails is recorded in :attr:`problems`, the rest load."""
        self.problems: list[LibraryProblem] = []
        self._libs: dict[str, Library] = {}
        for path in modules:
            if path in self._libs:
                continue
            if not os.path.isfile(path):
                log.warning("PKCS#11 module %s does not exist", path)
                self.problems.append(LibraryProblem(path, ModuleLoadFailed(f"{path}: no such file")))
                continue
            try:
                self._libs[path] = Library(path)
            except (*PKCS11_ERRORS, OSError, AttributeError) as exc:  # AttributeError: no C_GetFunctionList
                log.warning("PKCS#11 module %s did not load: %s", path, exc)
                self.problems.append(LibraryProblem(path, ModuleLoadFailed(f"{path}: {exc}")))
        self._locks_lock = threading.Lock()  # guards the dict below, not any token
        self._token_locks: dict[str, threading.RLock] = {}
        self._sharing = {path: ModuleSharing() for path in self._libs}
        self._found = Discovery(self._libs, self._sharing)
        self._mechanisms: dict[str, frozenset[int]] = {}

    @property
    def modules(self) -> list[str]:
        return list(self._libs)

    # --- discovery ------------------------------------------------------------------------

    def tokens(self) -> list[Token]:
        found: list[Token] = []
        for module in self._libs:
            try:
                found.extend(self._found.module_tokens(module))
            except CertAgentError as exc:
                log.warning("listing tokens of %s failed: %s", module, exc.describe())
        return found

    def certificates(self, token: Token) -> list[TokenCertificate]:
        sm2 = self._sm2(token)
        with self._session(token) as (session, current), pkcs11_errors():
            return objects.certificates(session, current, self._libs[token.module], sm2.key_type if sm2 else None)

    def mechanisms(self, token: Token) -> frozenset[int]:
        """The token's mechanisms (CKM_ values), asked once per token."""
        cached = self._mechanisms.get(token.token_id)
        if cached is None:
            with self._token_lock(token), self._sharing[token.module].shared(), pkcs11_errors():
                current = self._found.current(token)
                cached = self._libs[token.module].mechanism_list(current.slot_id)  # vendors' values too
            self._mechanisms[token.token_id] = cached
        return cached

    def prepare(self, token: Token) -> None:
        self.mechanisms(token)

    # --- PIN --------------------------------------------------------------------------------

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        """C_Login then C_Logout: raises PinIncorrect or PinLocked, returns None when the PIN is
        right. ``pin`` None: the reader's PIN pad collects it."""
        with self._session(token) as (session, current), self._logged_in(session, current, pin):
            log.info("PIN verified on token %s", current.serial)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        """C_SetPIN in a read-write user session, after the policy check (which raises
        PinPolicyViolation before the token is touched). With ``old`` and ``new`` None the
        reader's PIN pad asks for both (C_SetPIN with no PINs, not logged in: the user types
        each once); the reader enforces its own policy then."""
        if old is None or new is None:
            if old is not None or new is not None:
                raise PinRequired()  # half on the pad, half typed: no reader does that
            with self._session(token, rw=True) as (session, current), self._pin_errors(current):
                self._libs[token.module].set_pin(session, None, None)
            log.info("PIN changed on the PIN pad of token %s", current.serial)
            return
        check_new_pin(old, new)
        with self._session(token, rw=True) as (session, current):
            with self._logged_in(session, current, old, allow_expired=True), pkcs11_errors():
                self._libs[token.module].set_pin(session, old.buffer(), new.buffer())
            log.info("PIN changed on token %s", current.serial)

    def pin_status(self, token: Token) -> PinStatus:
        with self._token_lock(token):
            return self._found.current(token).pin

    # --- signing ----------------------------------------------------------------------------

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Log in with ``pin``, sign ``data`` with the private key sharing ``cert_id``, log out.

        The token's combined hash-and-sign mechanism is used where it has one; otherwise the
        host hashes and the raw mechanism signs. ECDSA signatures are raw ``r || s``.
        """
        if algorithm.key_type is KeyType.SM2:
            return self._sign_sm2(token, cert_id, pin, data)
        plan = plan_signature(algorithm, data, self.mechanisms(token))
        if plan is None:
            raise MechanismNotSupported(algorithm.value)
        with (
            self._session(token) as (session, current),
            self._logged_in(session, current, pin),
            pkcs11_errors(),
        ):
            key = objects.private_key(session, self._libs[token.module], cert_id, algorithm)
            signature = self._libs[token.module].sign_with(session, key, int(plan.mechanism), plan.payload, plan.pss)
        log.info("signed on token %s with %s (%s)", current.serial, algorithm.value, plan.mechanism_name)
        return signature

    def _sm2(self, token: Token) -> Sm2OverPkcs11 | None:
        """The media catalog's SM2 values for the token's module and model, if any."""
        entry = default_catalog().for_token(token.module, token.manufacturer, token.model)
        return entry.sm2 if entry is not None else None

    def _sign_sm2(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes) -> bytes:
        """SM2 with SM3 by a vendor's mechanism, with the values the media catalog gives for the
        module (none are standard); the module computes Z at the default ID. DER r, s back."""
        sm2 = self._sm2(token)
        if sm2 is None:
            raise MechanismNotSupported("SM2SM3: the media catalog names no SM2 mechanism for this module")
        if sm2.mechanism not in self.mechanisms(token):
            raise MechanismNotSupported(f"SM2SM3: the token lacks mechanism 0x{sm2.mechanism:08X}")
        lib = self._libs[token.module]
        with self._session(token) as (session, current), self._logged_in(session, current, pin), pkcs11_errors():
            key = objects.sm2_private_key(session, lib, cert_id, sm2.key_type)
            signature = lib.sign_with(session, key, sm2.mechanism, data)
        der = raw_to_der(signature) if sm2.signature == "raw" else signature
        if der is None or not der.startswith(b"\x30"):
            raise Pkcs11Failure(f"the SM2 mechanism returned {len(signature)} bytes that are no signature")
        log.info("signed on token %s with SM2SM3 (mechanism 0x%08X)", current.serial, sm2.mechanism)
        return der

    # --- new media, unloading ---------------------------------------------------------------

    def rescan(self) -> None:
        """Make tokens inserted since the modules were loaded visible.

        Most modules (OpenSC and the card vendors') show new tokens on the next C_GetSlotList,
        which every scan calls anyway. A few only learn of new tokens at C_Initialize; those
        (the media catalog's ``reinitForNewTokens``) are finalized and initialized again, which
        ends every session: so only once the calls under way have ended (new ones wait; a call
        under way for ``RESCAN_WAIT`` seconds may hang, and the rescan is left to a later scan).
        C_WaitForSlotEvent cannot tell the two kinds apart: SoftHSM2 answers CKR_NO_EVENT forever.

        SoftHSM2 rewrites a token's file at every login, and C_Initialize reading it meanwhile
        (another process logging in) misses the token: so a re-initialization that loses a token
        is done again, up to ``RESCAN_TRIES`` times, before the loss is believed.
        """
        for module, lib in list(self._libs.items()):
            if not default_catalog().reinitializes(module):
                continue
            with self._sharing[module].alone(RESCAN_WAIT) as alone:
                if not alone:
                    log.info("rescan of %s deferred: a call is under way", module)
                    continue
                try:
                    before = Discovery.serials(lib)
                    for attempt in range(RESCAN_TRIES):
                        if attempt:
                            time.sleep(0.02 * attempt)
                        lib.reinitialize()
                        if before <= Discovery.serials(lib):
                            break
                except PKCS11_ERRORS as exc:
                    log.warning("rescanning %s failed: %s", module, exc)

    def close(self) -> None:
        for lib in self._libs.values():
            with suppress(*PKCS11_ERRORS):  # a module that failed at runtime: nothing more to do
                lib.finalize()
        self._libs.clear()

    # --- sessions and login -----------------------------------------------------------------

    def _token_lock(self, token: Token) -> threading.RLock:
        with self._locks_lock:
            return self._token_locks.setdefault(token.token_id, threading.RLock())

    @contextmanager
    def _session(self, token: Token, rw: bool = False) -> Iterator[tuple[Any, Token]]:
        """Hold the token's lock, open a session, close it at the end whatever happens."""
        if token.module not in self._libs:
            raise ModuleLoadFailed(token.module)
        with self._token_lock(token), self._sharing[token.module].shared():
            current, handle = self._found.check(token)
            session = None
            try:
                with pkcs11_errors():
                    session = handle.open(rw=rw)
                yield session, current
            except (Pkcs11Failure, DeviceError, CertificateNotFound, PrivateKeyNotFound) as exc:
                # Objects or handles that vanish mid-call (CKR_OBJECT_HANDLE_INVALID, an empty
                # C_FindObjects), or a session that cannot be opened (SoftHSM2: CKR_GENERAL_ERROR)
                # mean the token was pulled out; say so.
                if not self._found.present(token):
                    raise DeviceRemoved(f"{token.serial}: {exc.detail}") from None
                raise
            finally:
                if session is not None:
                    with suppress(*PKCS11_ERRORS):  # the token is gone; the session went with it
                        session.close()

    @contextmanager
    def _logged_in(self, session: Any, token: Token, pin: Pin | None, allow_expired: bool = False) -> Iterator[None]:
        """C_Login as the user (with no PIN: the reader's PIN pad collects it), C_Logout at the end."""
        if token.pin_state is PinState.LOCKED:
            raise PinLocked(token.serial)  # no point presenting a PIN to a locked token
        lib = self._libs[token.module]
        try:
            lib.login(session, pin_buffer(pin))
        except ReturnCode as exc:
            if exc.code == CKR["CKR_USER_ALREADY_LOGGED_IN"]:
                # Another caller of this module left the token logged in: start clean so the
                # PIN is really checked.
                with pkcs11_errors():
                    lib.logout(session)
                    lib.login(session, pin_buffer(pin))
            elif exc.code == CKR["CKR_PIN_INCORRECT"]:
                raise self._wrong_pin(token) from None
            elif exc.code == CKR["CKR_PIN_EXPIRED"] and allow_expired:
                pass  # logged in, but only C_SetPIN is allowed: exactly what change_pin does
            else:
                raise translate(exc) from None
        try:
            yield
        finally:
            try:
                lib.logout(session)
            except ReturnCode as exc:
                log.info("logout on token %s: %s", token.serial, ckr_name(exc))

    @contextmanager
    def _pin_errors(self, token: Token) -> Iterator[None]:
        """A PIN checked by the token outside C_Login (C_SetPIN on a PIN pad): a wrong one is
        reported as in ``_logged_in``."""
        try:
            yield
        except PKCS11_ERRORS as exc:
            if return_code(exc) == CKR["CKR_PIN_INCORRECT"]:
                raise self._wrong_pin(token) from None
            raise translate(exc) from None

    def _wrong_pin(self, token: Token) -> CertAgentError:
        """PinIncorrect with what the token's flags say now (final try: 1 left), or PinLocked."""
        try:
            after = self._found.current(token).pin
        except CertAgentError:
            after = token.pin
        if after.state is PinState.LOCKED:
            log.warning("wrong PIN on token %s; the PIN is now locked", token.serial)
            return PinLocked(token.serial)
        log.warning("wrong PIN on token %s; tries left: %s", token.serial, after.tries_left)
        return PinIncorrect(token.serial, tries_left=after.tries_left)
