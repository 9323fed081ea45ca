"""Token access over PKCS#11, through PyKCS11.

One :class:`Pkcs11Driver` loads one or more PKCS#11 modules and offers what the agent needs:
list tokens and their certificates, verify and change the user PIN, and sign. Rules it keeps:

- every call for one token holds that token's lock, so the driver is safe from several threads
  and the PKCS#11 login state (shared by all sessions of a token) never mixes two operations;
- every operation opens its own session and, when it logged in, logs out before it returns;
- every PKCS#11 failure becomes an :class:`~cert_agent.common.errors.CertAgentError` with a stable code;
- a PIN is passed to C_Login / C_SetPIN and nowhere else: not to logs, not to error text.

PyKCS11 holds the GIL during C calls, so a slow token blocks every Python thread of the
process. Callers that must stay responsive (the agent daemon) run the driver in a worker
process; the driver itself is plain synchronous code.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import PyKCS11
from PyKCS11 import PyKCS11Error

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
from cert_agent.drivers.mechanisms import plan_signature
from cert_agent.drivers.models import (
    ModuleProblem,
    PinState,
    Token,
    TokenCertificate,
    medium_of,
    pin_state_of,
)
from cert_agent.drivers.pin import Pin, check_new_pin, revealed

log = logging.getLogger("cert_agent.pkcs11")

# CKR codes meaning the token went away while we were using it.
_GONE = {
    PyKCS11.CKR_DEVICE_REMOVED,
    PyKCS11.CKR_TOKEN_NOT_PRESENT,
    PyKCS11.CKR_SESSION_HANDLE_INVALID,
    PyKCS11.CKR_SESSION_CLOSED,
    PyKCS11.CKR_SLOT_ID_INVALID,
    PyKCS11.CKR_TOKEN_NOT_RECOGNIZED,
}
_BY_CKR: dict[int, type[CertAgentError]] = {
    PyKCS11.CKR_PIN_LOCKED: PinLocked,
    PyKCS11.CKR_PIN_LEN_RANGE: PinLenRange,
    PyKCS11.CKR_PIN_INVALID: PinLenRange,
    PyKCS11.CKR_PIN_EXPIRED: PinExpired,
    PyKCS11.CKR_DEVICE_ERROR: DeviceError,
    PyKCS11.CKR_DEVICE_MEMORY: DeviceError,
    PyKCS11.CKR_TOKEN_WRITE_PROTECTED: TokenWriteProtected,
    PyKCS11.CKR_MECHANISM_INVALID: MechanismNotSupported,
    PyKCS11.CKR_MECHANISM_PARAM_INVALID: MechanismNotSupported,
    PyKCS11.CKR_KEY_TYPE_INCONSISTENT: MechanismNotSupported,
}


# Modules that see tokens added to their store only at C_Initialize (by C_GetInfo manufacturerID).
REINITIALIZE_TO_RESCAN = frozenset({"SoftHSM"})


def _clean(text: str) -> str:
    """CK_TOKEN_INFO strings are fixed-width, padded with blanks, by some modules with NULs."""
    return str(text).replace("\x00", " ").strip()


def _distinct(tokens: list[Token]) -> list[Token]:
    """Tokens of one module whose serial is empty or repeated (cheap keys, tpm2-pkcs11's
    "0000000000000000") are told apart by their slot, which holds while they are present."""
    serials = [t.serial for t in tokens]
    return [
        replace(t, slot_tag=f"slot-{t.slot_id}") if not t.serial or serials.count(t.serial) > 1 else t for t in tokens
    ]


def ckr_name(code: int) -> str:
    return str(PyKCS11.CKR.get(code, f"CKR_0x{code:08X}"))


def translate(exc: PyKCS11Error) -> CertAgentError:
    """The typed error for a PKCS#11 return code (PIN_INCORRECT is handled at login)."""
    code = int(exc.value)
    if code in _GONE:
        return DeviceRemoved(ckr_name(code))
    if code == PyKCS11.CKR_PIN_INCORRECT:
        return PinIncorrect(ckr_name(code))
    return _BY_CKR.get(code, Pkcs11Failure)(ckr_name(code))


@contextmanager
def pkcs11_errors() -> Iterator[None]:
    """Turn PyKCS11 errors raised inside the block into typed errors."""
    try:
        yield
    except PyKCS11Error as exc:
        raise translate(exc) from None


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """PyKCS11's loader prints dlopen failures on file descriptor 1; keep them off stdout,
    which belongs to the program's output (JSON for machines)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Pkcs11Driver:
    def __init__(self, modules: Sequence[str], *, pin_max_tries: int | None = None) -> None:
        """Load ``modules``; one that fails is recorded in :attr:`problems`, the rest load.

        ``pin_max_tries`` is how many consecutive wrong PINs the media lock after; when set,
        a wrong PIN reports the tries left counted from the failures this driver has seen,
        unless the token's own flags say more (final try, locked).
        """
        self.problems: list[ModuleProblem] = []
        self._libs: dict[str, PyKCS11.PyKCS11Lib] = {}
        for path in modules:
            if path in self._libs:
                continue
            if not os.path.isfile(path):
                log.warning("PKCS#11 module %s does not exist", path)
                self.problems.append(ModuleProblem(path, ModuleLoadFailed(f"{path}: no such file")))
                continue
            try:
                with _stdout_to_stderr():
                    self._libs[path] = PyKCS11.PyKCS11Lib().load(path)
            except PyKCS11Error as exc:
                log.warning("PKCS#11 module %s did not load: %s", path, exc)
                self.problems.append(ModuleProblem(path, ModuleLoadFailed(f"{path}: {exc}")))
        self._pin_max_tries = pin_max_tries
        self._guard = threading.Lock()
        self._token_locks: dict[str, threading.RLock] = {}
        self._module_locks = {path: threading.Lock() for path in self._libs}
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
        with self._session(token) as (session, current):
            handles = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE)])
            result = [self._certificate(session, current, handle) for handle in handles]
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
            with self._token_lock(token), pkcs11_errors():
                current = self._refresh(token)
                names = self._libs[token.module].getMechanismList(current.slot_id)
            cached = frozenset(int(PyKCS11.CKM[name]) for name in names if name in PyKCS11.CKM)
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
                session.setPin(None, None)
            log.info("PIN changed on the PIN pad of token %s", current.serial)
            return
        check_new_pin(old, new)
        with self._session(token, rw=True) as (session, current):
            with self._logged_in(session, current, old, allow_expired=True), pkcs11_errors():
                session.setPin(old.reveal(), new.reveal())
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
            signature = bytes(session.sign(key, plan.payload, plan.mechanism))
        log.info("signed on token %s with %s (%s)", current.serial, algorithm.value, plan.mechanism_name)
        return signature

    def rescan(self) -> None:
        """Make tokens inserted since the modules were loaded visible.

        Most modules (OpenSC and the card vendors') show new tokens on the next C_GetSlotList,
        which every scan calls anyway. A few only learn of new tokens at C_Initialize; those
        (``REINITIALIZE_TO_RESCAN``, by C_GetInfo manufacturer) are finalized and initialized
        again. C_WaitForSlotEvent cannot tell the two kinds apart: SoftHSM2 answers CKR_NO_EVENT
        forever. Call this only where no other operation on the driver runs at the same time
        (the agent's discovery worker).
        """
        for module, lib in list(self._libs.items()):
            with self._module_locks[module]:
                try:
                    manufacturer = str(lib.getInfo().manufacturerID).strip()
                    if manufacturer in REINITIALIZE_TO_RESCAN:
                        with _stdout_to_stderr():
                            lib.load(module)
                except PyKCS11Error as exc:
                    log.warning("rescanning %s failed: %s", module, exc)

    def close(self) -> None:
        for lib in self._libs.values():
            with suppress(PyKCS11Error):  # a module that failed at runtime: nothing more to do
                lib.unload()
        self._libs.clear()

    # --- internals --------------------------------------------------------------------------

    def _module_tokens(self, module: str) -> list[Token]:
        lib = self._libs[module]
        with self._module_locks[module], pkcs11_errors():
            slots = lib.getSlotList(tokenPresent=True)
        tokens = []
        for slot in slots:
            try:
                token = self._token_at(module, int(slot))
            except CertAgentError as exc:  # removed between the two calls
                log.info("slot %s of %s: %s", slot, module, exc.describe())
                continue
            if token.flags & PyKCS11.CKF_TOKEN_INITIALIZED:  # a blank slot is no medium
                tokens.append(token)
        return _distinct(tokens)

    def _token_at(self, module: str, slot_id: int) -> Token:
        with pkcs11_errors():
            info = self._libs[module].getTokenInfo(slot_id)
            slot = self._libs[module].getSlotInfo(slot_id)
        label = _clean(info.label)
        model = _clean(info.model)
        manufacturer = _clean(info.manufacturerID)
        entry = default_catalog().for_token(module, manufacturer, model)
        return Token(
            module=module,
            slot_id=slot_id,
            label=label,
            serial=_clean(info.serialNumber),
            manufacturer=manufacturer,
            model=model,
            flags=int(info.flags),
            # the catalog's word, else what the label says (for media the catalog does not name)
            medium=entry.medium if entry and entry.medium else medium_of(label, model),
            reader=_clean(slot.slotDescription),
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
        lib = self._libs.get(token.module)
        if lib is None:
            raise ModuleLoadFailed(token.module)
        with self._token_lock(token):
            current = self._refresh(token)
            flags = PyKCS11.CKF_SERIAL_SESSION | (PyKCS11.CKF_RW_SESSION if rw else 0)
            with pkcs11_errors():
                session = lib.openSession(current.slot_id, flags)
            try:
                yield session, current
            except (Pkcs11Failure, DeviceError, CertificateNotFound, PrivateKeyNotFound) as exc:
                # Objects or handles that vanish mid-call (CKR_OBJECT_HANDLE_INVALID, an empty
                # C_FindObjects) mean the token was pulled out; say so.
                if not self._present(token):
                    raise DeviceRemoved(f"{token.serial}: {exc.detail}") from None
                raise
            finally:
                with suppress(PyKCS11Error):  # the token is gone; the session went with it
                    session.closeSession()

    @contextmanager
    def _logged_in(self, session: Any, token: Token, pin: Pin | None, allow_expired: bool = False) -> Iterator[None]:
        """C_Login as the user (with no PIN: the reader's PIN pad collects it), C_Logout at the
        end. Counts failures for the tries estimate."""
        if token.pin_state is PinState.LOCKED:
            raise PinLocked(token.serial)  # no point presenting a PIN to a locked token
        try:
            session.login(revealed(pin))
        except PyKCS11Error as exc:
            code = int(exc.value)
            if code == PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
                # Another caller of this module left the token logged in: start clean so the
                # PIN is really checked.
                with pkcs11_errors():
                    session.logout()
                    session.login(revealed(pin))
            elif code == PyKCS11.CKR_PIN_INCORRECT:
                raise self._wrong_pin(token) from None
            elif code == PyKCS11.CKR_PIN_EXPIRED and allow_expired:
                pass  # logged in, but only C_SetPIN is allowed: exactly what change_pin does
            else:
                raise translate(exc) from None
        self._failures.pop(token.token_id, None)
        try:
            yield
        finally:
            try:
                session.logout()
            except PyKCS11Error as exc:
                log.info("logout on token %s: %s", token.serial, ckr_name(int(exc.value)))

    @contextmanager
    def _pin_errors(self, token: Token) -> Iterator[None]:
        """A PIN checked by the token outside C_Login (C_SetPIN on a PIN pad): a wrong one counts
        as in ``_logged_in``."""
        try:
            yield
        except PyKCS11Error as exc:
            if int(exc.value) == PyKCS11.CKR_PIN_INCORRECT:
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

    def _certificate(self, session: Any, token: Token, handle: Any) -> TokenCertificate:
        with pkcs11_errors():
            value, object_id, label = session.getAttributeValue(
                handle, [PyKCS11.CKA_VALUE, PyKCS11.CKA_ID, PyKCS11.CKA_LABEL], allAsBinary=True
            )
            object_id = bytes(object_id or b"")
            has_key = bool(self._objects(session, PyKCS11.CKO_PRIVATE_KEY, object_id)) or bool(
                self._objects(session, PyKCS11.CKO_PUBLIC_KEY, object_id)
            )
        der = bytes(value or b"")
        try:
            info, error = parse_certificate(der), None
        except CertificateUnparsable as exc:
            info, error = None, exc
            log.warning("certificate %s on token %s is unparsable", object_id.hex(), token.serial)
        return TokenCertificate(
            token=token,
            object_id=object_id,
            object_label=bytes(label or b"").decode("utf-8", "replace"),
            der=der,
            has_private_key=has_key,
            info=info,
            error=error,
        )

    @staticmethod
    def _objects(session: Any, object_class: int, object_id: bytes) -> list[Any]:
        return list(session.findObjects([(PyKCS11.CKA_CLASS, object_class), (PyKCS11.CKA_ID, object_id)]))

    def _private_key(self, session: Any, cert_id: bytes, algorithm: SignatureAlgorithm) -> Any:
        key_type = PyKCS11.CKK_EC if algorithm.key_type.value == "EC" else PyKCS11.CKK_RSA
        keys = session.findObjects(
            [
                (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
                (PyKCS11.CKA_ID, cert_id),
                (PyKCS11.CKA_KEY_TYPE, key_type),
            ]
        )
        if keys:
            return keys[0]
        # Why not: no key of that type, no key at all, or not even the certificate.
        if self._objects(session, PyKCS11.CKO_PRIVATE_KEY, cert_id):
            raise MechanismNotSupported(f"{algorithm.value} needs a {PyKCS11.CKK[key_type]} key")
        if self._objects(session, PyKCS11.CKO_CERTIFICATE, cert_id):
            raise PrivateKeyNotFound(cert_id.hex())
        raise CertificateNotFound(cert_id.hex())
