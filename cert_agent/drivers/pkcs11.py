"""Token access over PKCS#11, through python-pkcs11.

One :class:`Pkcs11Driver` loads one or more PKCS#11 modules and offers what the agent needs:
list tokens and their certificates, verify and change the user PIN, and sign. Rules it keeps:

- it is safe from several threads: python-pkcs11 releases the GIL during every PKCS#11 call and
  the modules are initialized for threads (``library.Library``), so one token's slow call holds
  up only the callers of that token;
- every call for one token holds that token's lock, so the PKCS#11 login state (shared by all
  sessions of a token) never mixes two operations;
- every operation opens its own session and, when it logged in, logs out before it returns;
- every PKCS#11 failure becomes an :class:`~cert_agent.common.errors.CertAgentError` with a stable code;
- a PIN is passed from its own buffer to C_Login / C_SetPIN and nowhere else: not to logs, not to
  error text, not into a Python string.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.certificate import parse_certificate
from cert_agent.drivers.errors import (
    CertificateNotFound,
    CertificateUnparsable,
    DeviceError,
    DeviceRemoved,
    MechanismNotSupported,
    ModuleLoadFailed,
    PinExpired,
    PinIncorrect,
    PinLenRange,
    PinLocked,
    PinRequired,
    Pkcs11Failure,
    PrivateKeyNotFound,
    TokenAmbiguous,
    TokenNotFound,
    TokenNotPresent,
    TokenWriteProtected,
)
from cert_agent.drivers.library import Library, ReturnCode
from cert_agent.drivers.mechanisms import plan_signature
from cert_agent.drivers.models import (
    CKF_TOKEN_INITIALIZED,
    ModuleProblem,
    PinState,
    Token,
    TokenCertificate,
    medium_of,
    pin_state_of,
)
from cert_agent.drivers.pin import Pin, check_new_pin, pin_buffer

log = logging.getLogger("cert_agent.pkcs11")

# The return codes the agent tells apart (PKCS#11 v2.40 base, CK_RV), by name and value.
CKR = {
    "CKR_SLOT_ID_INVALID": 0x003,
    "CKR_DEVICE_ERROR": 0x030,
    "CKR_DEVICE_MEMORY": 0x031,
    "CKR_DEVICE_REMOVED": 0x032,
    "CKR_KEY_TYPE_INCONSISTENT": 0x063,
    "CKR_MECHANISM_INVALID": 0x070,
    "CKR_MECHANISM_PARAM_INVALID": 0x071,
    "CKR_PIN_INCORRECT": 0x0A0,
    "CKR_PIN_INVALID": 0x0A1,
    "CKR_PIN_LEN_RANGE": 0x0A2,
    "CKR_PIN_EXPIRED": 0x0A3,
    "CKR_PIN_LOCKED": 0x0A4,
    "CKR_SESSION_CLOSED": 0x0B0,
    "CKR_SESSION_HANDLE_INVALID": 0x0B3,
    "CKR_TOKEN_NOT_PRESENT": 0x0E0,
    "CKR_TOKEN_NOT_RECOGNIZED": 0x0E1,
    "CKR_TOKEN_WRITE_PROTECTED": 0x0E2,
    "CKR_USER_ALREADY_LOGGED_IN": 0x100,
}
_NAMES = {code: name for name, code in CKR.items()}
# python-pkcs11 raises one exception class per return code; the ones above, by class.
_CODE_OF: dict[type[Exception], int] = {
    p11.SlotIDInvalid: CKR["CKR_SLOT_ID_INVALID"],
    p11.DeviceError: CKR["CKR_DEVICE_ERROR"],
    p11.DeviceMemory: CKR["CKR_DEVICE_MEMORY"],
    p11.DeviceRemoved: CKR["CKR_DEVICE_REMOVED"],
    p11.KeyTypeInconsistent: CKR["CKR_KEY_TYPE_INCONSISTENT"],
    p11.MechanismInvalid: CKR["CKR_MECHANISM_INVALID"],
    p11.MechanismParamInvalid: CKR["CKR_MECHANISM_PARAM_INVALID"],
    p11.PinIncorrect: CKR["CKR_PIN_INCORRECT"],
    p11.PinInvalid: CKR["CKR_PIN_INVALID"],
    p11.PinLenRange: CKR["CKR_PIN_LEN_RANGE"],
    p11.PinExpired: CKR["CKR_PIN_EXPIRED"],
    p11.PinLocked: CKR["CKR_PIN_LOCKED"],
    p11.SessionClosed: CKR["CKR_SESSION_CLOSED"],
    p11.SessionHandleInvalid: CKR["CKR_SESSION_HANDLE_INVALID"],
    p11.TokenNotPresent: CKR["CKR_TOKEN_NOT_PRESENT"],
    p11.TokenNotRecognised: CKR["CKR_TOKEN_NOT_RECOGNIZED"],
    p11.TokenWriteProtected: CKR["CKR_TOKEN_WRITE_PROTECTED"],
    p11.UserAlreadyLoggedIn: CKR["CKR_USER_ALREADY_LOGGED_IN"],
}
# Codes meaning the token went away while we were using it.
_GONE = {CKR[name] for name in ("CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_SESSION_HANDLE_INVALID",
                                "CKR_SESSION_CLOSED", "CKR_SLOT_ID_INVALID", "CKR_TOKEN_NOT_RECOGNIZED")}  # fmt: skip
_BY_CODE: dict[int, type[CertAgentError]] = {
    CKR["CKR_PIN_LOCKED"]: PinLocked,
    CKR["CKR_PIN_LEN_RANGE"]: PinLenRange,
    CKR["CKR_PIN_INVALID"]: PinLenRange,
    CKR["CKR_PIN_EXPIRED"]: PinExpired,
    CKR["CKR_DEVICE_ERROR"]: DeviceError,
    CKR["CKR_DEVICE_MEMORY"]: DeviceError,
    CKR["CKR_TOKEN_WRITE_PROTECTED"]: TokenWriteProtected,
    CKR["CKR_MECHANISM_INVALID"]: MechanismNotSupported,
    CKR["CKR_MECHANISM_PARAM_INVALID"]: MechanismNotSupported,
    CKR["CKR_KEY_TYPE_INCONSISTENT"]: MechanismNotSupported,
}
_PKCS11_ERRORS = (p11.PKCS11Error, ReturnCode)

RESCAN_WAIT = 0.5  # seconds a re-initialization waits for the calls under way on its module
RESCAN_TRIES = 5


def _clean(text: str | bytes) -> str:
    """CK_TOKEN_INFO strings are fixed-width, padded with blanks, by some modules with NULs."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).replace("\x00", " ").strip()


def _distinct(tokens: list[Token]) -> list[Token]:
    """Tokens of one module whose serial is empty or repeated (cheap keys, tpm2-pkcs11's
    "0000000000000000") are told apart by their slot, which holds while they are present."""
    serials = [t.serial for t in tokens]
    return [
        replace(t, slot_tag=f"slot-{t.slot_id}") if not t.serial or serials.count(t.serial) > 1 else t for t in tokens
    ]


def return_code(exc: Exception) -> int | None:
    """The CK_RV behind a python-pkcs11 exception or a :class:`ReturnCode` (None: not known)."""
    if isinstance(exc, ReturnCode):
        return exc.code
    return next((code for kind, code in _CODE_OF.items() if isinstance(exc, kind)), None)


def ckr_name(exc: Exception) -> str:
    code = return_code(exc)
    if code is None:
        return type(exc).__name__
    return _NAMES.get(code, f"CKR_0x{code:08X}")


def translate(exc: Exception) -> CertAgentError:
    """The typed error for a failed PKCS#11 call (PIN_INCORRECT is handled at login)."""
    code, name = return_code(exc), ckr_name(exc)
    if code in _GONE:
        return DeviceRemoved(name)
    if code == CKR["CKR_PIN_INCORRECT"]:
        return PinIncorrect(name)
    return _BY_CODE.get(code if code is not None else -1, Pkcs11Failure)(name)


@contextmanager
def pkcs11_errors() -> Iterator[None]:
    """Turn PKCS#11 failures raised inside the block into typed errors."""
    try:
        yield
    except _PKCS11_ERRORS as exc:
        raise translate(exc) from None


class _ModuleGate:
    """Calls into one module share it; re-initializing it (which ends every session) needs it
    alone. A re-initialization holds new calls back and waits for the calls under way to end, so
    steady traffic cannot put it off forever, but never longer than until the oldest call under
    way is ``wait`` seconds old: a call that old may hang, and the re-initialization is skipped
    then (at once, while such a call goes on), so a hung call holds up nobody else.

    A thread may enter ``shared`` again inside a call (the driver's helpers do); only its
    outermost entry counts and waits.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._started: dict[int, float] = {}  # thread -> when its call under way began
        self._depth = threading.local()
        self._reinitializing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth: int = getattr(self._depth, "value", 0)
        if depth == 0:
            with self._changed:
                self._changed.wait_for(lambda: not self._reinitializing)
                self._started[threading.get_ident()] = time.monotonic()
        self._depth.value = depth + 1
        try:
            yield
        finally:
            self._depth.value = depth
            if depth == 0:
                with self._changed:
                    del self._started[threading.get_ident()]
                    self._changed.notify_all()

    @contextmanager
    def alone(self, wait: float) -> Iterator[bool]:
        """Yields True once no call is under way (and none starts until the block ends), False
        when the calls under way did not end before the oldest of them was ``wait`` seconds old."""
        with self._changed:
            now = time.monotonic()
            left = min(self._started.values(), default=now) + wait - now
            if self._started and left > 0:
                self._reinitializing = True  # new calls wait from now on
                self._changed.wait_for(lambda: not self._started, timeout=left)
            alone = not self._started
            self._reinitializing = alone
            if not alone:
                self._changed.notify_all()  # the calls held back go on
        try:
            yield alone
        finally:
            if alone:
                with self._changed:
                    self._reinitializing = False
                    self._changed.notify_all()


class Pkcs11Driver:
    def __init__(self, modules: Sequence[str], *, pin_max_tries: int | None = None) -> None:
        """Load ``modules``; one that fails is recorded in :attr:`problems`, the rest load.

        ``pin_max_tries`` is how many consecutive wrong PINs the media lock after; when set,
        a wrong PIN reports the tries left counted from the failures this driver has seen,
        unless the token's own flags say more (final try, locked).
        """
        self.problems: list[ModuleProblem] = []
        self._libs: dict[str, Library] = {}
        for path in modules:
            if path in self._libs:
                continue
            if not os.path.isfile(path):
                log.warning("PKCS#11 module %s does not exist", path)
                self.problems.append(ModuleProblem(path, ModuleLoadFailed(f"{path}: no such file")))
                continue
            try:
                self._libs[path] = Library(path)
            except (*_PKCS11_ERRORS, OSError, AttributeError) as exc:  # AttributeError: no C_GetFunctionList
                log.warning("PKCS#11 module %s did not load: %s", path, exc)
                self.problems.append(ModuleProblem(path, ModuleLoadFailed(f"{path}: {exc}")))
        self._pin_max_tries = pin_max_tries
        self._guard = threading.Lock()
        self._token_locks: dict[str, threading.RLock] = {}
        self._gates = {path: _ModuleGate() for path in self._libs}
        self._slots: dict[tuple[str, int], Any] = {}
        self._failures: dict[str, int] = {}
        self._mechanisms: dict[str, frozenset[int]] = {}

    @property
    def modules(self) -> list[str]:
        return list(self._libs)

    # --- discovery ------------------------------------------------------------------------

    def tokens(self) -> list[Token]:
        """Every present token of every loaded module. A module that fails to list is
        skipped (and logged); the tokens of the others are still returned."""
        found: list[Token] = []
        for module in self._libs:
            try:
                found.extend(self._module_tokens(module))
            except CertAgentError as exc:
                log.warning("listing tokens of %s failed: %s", module, exc.describe())
        return found

    def find_token(self, *, label: str | None = None, serial: str | None = None, token_id: str | None = None) -> Token:
        matches = [
            t
            for t in self.tokens()
            if (label is None or t.label == label)
            and (serial is None or t.serial == serial)
            and (token_id is None or t.token_id == token_id)
        ]
        if not matches:
            raise TokenNotFound(label or serial or token_id or "")
        if len(matches) > 1:
            raise TokenAmbiguous(label or serial or token_id or "")
        return matches[0]

    def certificates(self, token: Token) -> list[TokenCertificate]:
        """The X.509 certificates on ``token``, each parsed; an unparsable one carries its
        error instead of ``info`` and the others are unaffected."""
        with self._session(token) as (session, current), pkcs11_errors():
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))
            result = [self._certificate(session, current, found_object) for found_object in found]
        return sorted(result, key=lambda c: c.object_id)

    def all_certificates(self) -> list[TokenCertificate]:
        result: list[TokenCertificate] = []
        for token in self.tokens():
            try:
                result.extend(self.certificates(token))
            except CertAgentError as exc:
                log.warning("listing certificates of %s failed: %s", token.serial, exc.describe())
        return result

    def mechanisms(self, token: Token) -> frozenset[int]:
        cached = self._mechanisms.get(token.token_id)
        if cached is None:
            with self._token_lock(token), self._gates[token.module].shared(), pkcs11_errors():
                current = self._refresh(token)
                cached = frozenset(int(m) for m in self._slot(current.module, current.slot_id).get_mechanisms())
            self._mechanisms[token.token_id] = cached
        return cached

    # --- PIN --------------------------------------------------------------------------------

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        """C_Login then C_Logout: raises PinIncorrect (with tries left where known) or
        PinLocked, returns None when the PIN is right. ``pin`` None: the reader's PIN pad
        collects it."""
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

    def pin_tries_left(self, token: Token) -> int | None:
        """What is known about the tries left before the PIN locks; None when unknown."""
        state = token.pin_state
        if state is PinState.LOCKED:
            return 0
        if state is PinState.FINAL_TRY:
            return 1
        if self._pin_max_tries is None:
            return None
        left = self._pin_max_tries - self._failures.get(token.token_id, 0)
        return left if left >= 1 else None

    # --- signing ----------------------------------------------------------------------------

    def sign(
        self,
        token: Token,
        cert_id: bytes,
        pin: Pin | None,
        data: bytes,
        algorithm: SignatureAlgorithm,
    ) -> bytes:
        """Log in with ``pin``, sign ``data`` with the private key sharing ``cert_id``, log out.

        The token's combined hash-and-sign mechanism is used where it has one; otherwise the
        host hashes and the raw mechanism signs. ECDSA signatures are raw ``r || s``.
        """
        mechanisms = self.mechanisms(token)
        plan = plan_signature(algorithm, data, mechanisms)
        if plan is None:
            raise MechanismNotSupported(algorithm.value)
        with (
            self._session(token) as (session, current),
            self._logged_in(session, current, pin),
            pkcs11_errors(),
        ):
            key = self._private_key(session, cert_id, algorithm)
            signature = bytes(key.sign(plan.payload, mechanism=plan.mechanism, mechanism_param=plan.parameter))
        log.info("signed on token %s with %s (%s)", current.serial, algorithm.value, plan.mechanism_name)
        return signature

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
            with self._gates[module].alone(RESCAN_WAIT) as alone:
                if not alone:
                    log.info("rescan of %s deferred: a call is under way", module)
                    continue
                try:
                    before = self._serials(lib)
                    for attempt in range(RESCAN_TRIES):
                        if attempt:
                            time.sleep(0.02 * attempt)
                        lib.reinitialize()
                        if before <= self._serials(lib):
                            break
                except _PKCS11_ERRORS as exc:
                    log.warning("rescanning %s failed: %s", module, exc)

    @staticmethod
    def _serials(lib: Library) -> set[bytes]:
        """The serials of the tokens the module shows (a lost one is missing here)."""
        serials = set()
        for slot in lib.get_slots(token_present=True):
            with suppress(*_PKCS11_ERRORS):
                serials.add(bytes(slot.get_token().serial))
        return serials

    def close(self) -> None:
        for lib in self._libs.values():
            with suppress(*_PKCS11_ERRORS):  # a module that failed at runtime: nothing more to do
                lib.finalize()
        self._libs.clear()

    # --- internals --------------------------------------------------------------------------

    def _slot(self, module: str, slot_id: int) -> Any:
        slot = self._slots.get((module, slot_id))
        if slot is None:
            for found in self._libs[module].get_slots(token_present=False):
                self._slots[(module, int(found.slot_id))] = found
            slot = self._slots.get((module, slot_id))
            if slot is None:
                raise p11.SlotIDInvalid()
        return slot

    def _module_tokens(self, module: str) -> list[Token]:
        lib = self._libs[module]
        with self._gates[module].shared(), pkcs11_errors():
            slots = lib.get_slots(token_present=True)
        tokens = []
        for slot in slots:
            self._slots[(module, int(slot.slot_id))] = slot
            try:
                token = self._token_at(module, int(slot.slot_id))
            except CertAgentError as exc:  # removed between the two calls
                log.info("slot %s of %s: %s", slot.slot_id, module, exc.describe())
                continue
            if token.flags & CKF_TOKEN_INITIALIZED:  # a blank slot is no medium
                tokens.append(token)
        return _distinct(tokens)

    def _token_at(self, module: str, slot_id: int) -> Token:
        with self._gates[module].shared(), pkcs11_errors():
            slot = self._slot(module, slot_id)
            info = slot.get_token()
        label = _clean(info.label)
        model = _clean(info.model)
        manufacturer = _clean(info.manufacturer_id)
        entry = default_catalog().for_token(module, manufacturer, model)
        return Token(
            module=module,
            slot_id=slot_id,
            label=label,
            serial=_clean(info.serial),
            manufacturer=manufacturer,
            model=model,
            flags=int(info.flags),
            # the catalog's word, else what the label says (for media the catalog does not name)
            medium=entry.medium if entry and entry.medium else medium_of(label, model),
            reader=_clean(slot.slot_description),
        )

    def _refresh(self, token: Token) -> Token:
        """The token as it is now (flags change with PIN failures; slots can be renumbered),
        or TokenNotPresent."""
        try:
            current = self._token_at(token.module, token.slot_id)
            if current.serial == token.serial:
                return replace(current, slot_tag=token.slot_tag)
        except CertAgentError:
            pass
        for candidate in self._module_tokens(token.module):
            if candidate.token_id == token.token_id:
                return candidate
        raise TokenNotPresent(token.serial)

    def _present(self, token: Token) -> bool:
        try:
            self._refresh(token)
        except CertAgentError:
            return False
        return True

    def _token_lock(self, token: Token) -> threading.RLock:
        with self._guard:
            return self._token_locks.setdefault(token.token_id, threading.RLock())

    @contextmanager
    def _session(self, token: Token, rw: bool = False) -> Iterator[tuple[Any, Token]]:
        """Hold the token's lock, open a session, close it at the end whatever happens."""
        if token.module not in self._libs:
            raise ModuleLoadFailed(token.module)
        with self._token_lock(token), self._gates[token.module].shared():
            current = self._refresh(token)
            session = None
            try:
                with pkcs11_errors():
                    session = self._slot(current.module, current.slot_id).get_token().open(rw=rw)
                yield session, current
            except (Pkcs11Failure, DeviceError, CertificateNotFound, PrivateKeyNotFound) as exc:
                # Objects or handles that vanish mid-call (CKR_OBJECT_HANDLE_INVALID, an empty
                # C_FindObjects), or a session that cannot be opened (SoftHSM2: CKR_GENERAL_ERROR)
                # mean the token was pulled out; say so.
                if not self._present(token):
                    raise DeviceRemoved(f"{token.serial}: {exc.detail}") from None
                raise
            finally:
                if session is not None:
                    with suppress(*_PKCS11_ERRORS):  # the token is gone; the session went with it
                        session.close()

    @contextmanager
    def _logged_in(self, session: Any, token: Token, pin: Pin | None, allow_expired: bool = False) -> Iterator[None]:
        """C_Login as the user (with no PIN: the reader's PIN pad collects it), C_Logout at the
        end. Counts failures for the tries estimate."""
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
        self._failures.pop(token.token_id, None)
        try:
            yield
        finally:
            try:
                lib.logout(session)
            except ReturnCode as exc:
                log.info("logout on token %s: %s", token.serial, ckr_name(exc))

    @contextmanager
    def _pin_errors(self, token: Token) -> Iterator[None]:
        """A PIN checked by the token outside C_Login (C_SetPIN on a PIN pad): a wrong one counts
        as in ``_logged_in``."""
        try:
            yield
        except _PKCS11_ERRORS as exc:
            if return_code(exc) == CKR["CKR_PIN_INCORRECT"]:
                raise self._wrong_pin(token) from None
            raise translate(exc) from None

    def _wrong_pin(self, token: Token) -> CertAgentError:
        self._failures[token.token_id] = self._failures.get(token.token_id, 0) + 1
        try:
            after = self._token_at(token.module, token.slot_id)
        except CertAgentError:
            after = token
        if pin_state_of(after.flags) is PinState.LOCKED:
            log.warning("wrong PIN on token %s; the PIN is now locked", token.serial)
            return PinLocked(token.serial)
        tries_left = self.pin_tries_left(after)
        log.warning("wrong PIN on token %s; tries left: %s", token.serial, tries_left)
        return PinIncorrect(token.serial, tries_left=tries_left)

    def _certificate(self, session: Any, token: Token, certificate: Any) -> TokenCertificate:
        der = bytes(certificate[Attribute.VALUE] or b"")
        object_id = bytes(certificate[Attribute.ID] or b"")
        label = _attribute(certificate, Attribute.LABEL) or ""
        has_key = bool(self._objects(session, ObjectClass.PRIVATE_KEY, object_id)) or bool(
            self._objects(session, ObjectClass.PUBLIC_KEY, object_id)
        )
        try:
            info, error = parse_certificate(der), None
        except CertificateUnparsable as exc:
            info, error = None, exc
            log.warning("certificate %s on token %s is unparsable", object_id.hex(), token.serial)
        return TokenCertificate(
            token=token,
            object_id=object_id,
            object_label=str(label),
            der=der,
            has_private_key=has_key,
            info=info,
            error=error,
        )

    @staticmethod
    def _objects(session: Any, object_class: ObjectClass, object_id: bytes) -> list[Any]:
        return list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: object_id}))

    def _private_key(self, session: Any, cert_id: bytes, algorithm: SignatureAlgorithm) -> Any:
        key_type = KeyType.EC if algorithm.key_type.value == "EC" else KeyType.RSA
        keys = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: cert_id, Attribute.KEY_TYPE: key_type}
            )
        )
        if keys:
            return keys[0]
        # Why not: no key of that type, no key at all, or not even the certificate.
        if self._objects(session, ObjectClass.PRIVATE_KEY, cert_id):
            raise MechanismNotSupported(f"{algorithm.value} needs a CKK_{key_type.name} key")
        if self._objects(session, ObjectClass.CERTIFICATE, cert_id):
            raise PrivateKeyNotFound(cert_id.hex())
        raise CertificateNotFound(cert_id.hex())


def _attribute(found: Any, attribute: Attribute) -> Any:
    """An optional attribute's value, or None where the object has none."""
    try:
        return found[attribute]
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
        return None
