"""The SKF driver: media behind vendors' SKF libraries (GM/T 0016-2012), through ctypes.

One :class:`SkfDriver` loads one or more SKF libraries and implements
:class:`~cert_agent.drivers.interface.TokenDriver`. A token is one application of one device (PINs
are per application): its id is the library, the device's serial and the application's name.
A certificate is a container's signing certificate; its ``cert_id`` is the container's name.

Rules it keeps, beside the ones every driver keeps:

- every call for one device holds that device's lock, connects, opens what it needs, and closes
  it all (with ClearSecureState) before it returns: no login state survives a call;
- a device is found again by its serial (device names change with the USB port);
- the PIN state is the device's own: GetPINInfo's retry limit, tries left and default flag;
  VerifyPIN's retry count on a wrong PIN (0: locked); a locked PIN is never presented;
- SM2 signs SM3(Z || data), Z from the container's public key and the GM/T 0009 default ID,
  computed by the device (SKF_DigestInit, SKF_Digest), then SKF_ECCSignData; the signature is
  returned as DER ``SEQUENCE {r, s}``. An RSA container signs RS256/384/512 (PKCS#1 v1.5 over the
  DigestInfo the driver makes);
- what a library returns is checked (``library.py``); garbage is ``SKF_GARBAGE`` for its device.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from asn1crypto.algos import DigestInfo

from cert_agent.common.algorithms import SM2_DEFAULT_ID, KeyType, Padding, SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.certificate import parse_certificate
from cert_agent.drivers.errors import (
    CertificateNotFound,
    CertificateUnparsable,
    KeyUnusable,
    MechanismNotSupported,
    ModuleLoadFailed,
    PinLocked,
    PinRequired,
    PrivateKeyNotFound,
    SkfGarbage,
    TokenNotPresent,
)
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.models import LibraryProblem, PinState, PinStatus, Token, TokenCertificate, medium_of
from cert_agent.drivers.pin import Pin, check_new_pin
from cert_agent.drivers.skf import structs
from cert_agent.drivers.skf.library import HANDLE, SkfLibrary
from cert_agent.drivers.skf.returncodes import SAR, SkfError, garbage, translate
from cert_agent.drivers.sm2 import der_signature

log = logging.getLogger("cert_agent.skf")

SM2_CONTAINER, RSA_CONTAINER = 2, 1


@dataclass(frozen=True)
class _Open:
    """A device and one of its applications, open for one call."""

    lib: SkfLibrary
    device: HANDLE
    app: HANDLE
    token: Token  # as the device describes it now


class SkfDriver(TokenDriver):
    """Media behind SKF libraries (see the module docstring for the rules it keeps)."""

    def __init__(self, libraries: Sequence[str]) -> None:
        self.problems: list[LibraryProblem] = []
        self._libs: dict[str, SkfLibrary] = {}
        for path in dict.fromkeys(libraries):
            if not os.path.isfile(path):
                self.problems.append(LibraryProblem(path, ModuleLoadFailed(f"{path}: no such file")))
                continue
            try:
                lib = SkfLibrary(path)
            except OSError as exc:
                log.warning("SKF library %s did not load: %s", path, exc)
                self.problems.append(LibraryProblem(path, ModuleLoadFailed(f"{path}: {exc}")))
                continue
            if lib.missing:
                detail = f"{path}: does not export {', '.join(lib.missing)}"
                self.problems.append(LibraryProblem(path, ModuleLoadFailed(detail)))
                continue
            self._libs[path] = lib
        self._locks_lock = threading.Lock()  # guards the dict below
        self._device_locks: dict[str, threading.RLock] = {}
        self._names: dict[str, str] = {}  # device key (library#serial) -> the name it was last seen under
        # (token id, container) -> (container type, signing public key blob), read with the
        # certificates (at every insertion) or at the first signature: a signature then costs no
        # export, as a vendor's own client does it
        self._keys: dict[tuple[str, str], tuple[int, bytes]] = {}

    @property
    def modules(self) -> list[str]:
        return list(self._libs)

    # --- discovery ----------------------------------------------------------------------------

    def tokens(self) -> list[Token]:
        found: list[Token] = []
        for module, lib in self._libs.items():
            try:
                names = lib.names("SKF_EnumDev", 1)
            except (SkfError, CertAgentError) as exc:
                log.warning("listing the devices of %s failed: %s", module, exc)
                continue
            for index, name in enumerate(names):
                try:
                    with lib.device(name) as device:
                        found.extend(self._device_tokens(module, lib, device, name, index))
                except SkfError as exc:
                    if exc.code != SAR["SAR_DEVICE_REMOVED"]:
                        log.warning("reading SKF device %s of %s failed: %s", name, module, exc)
                except CertAgentError as exc:
                    log.warning("reading SKF device %s of %s failed: %s", name, module, exc.describe())
        return found

    def _device_tokens(self, module: str, lib: SkfLibrary, device: HANDLE, name: str, index: int) -> list[Token]:
        info = lib.device_info(device)
        if not info.serial:
            raise garbage("SKF_GetDevInfo", "a device without a serial number")
        self._names[f"{module}#{info.serial}"] = name
        tokens = []
        for app_name in lib.names("SKF_EnumApplication", device):
            with lib.application(device, app_name) as app:
                tokens.append(_token(module, index, info, app_name, lib.pin_info(app)))
        return tokens

    def certificates(self, token: Token) -> list[TokenCertificate]:
        with self._opened(token) as opened:
            names = opened.lib.names("SKF_EnumContainer", opened.app)
            found = [self._certificate(opened, name) for name in names]
        return sorted((c for c in found if c is not None), key=lambda c: c.object_id)

    def _certificate(self, opened: _Open, name: str) -> TokenCertificate | None:
        lib = opened.lib
        object_id = name.encode("utf-8")
        try:
            with lib.container(opened.app, name) as container:
                kind = lib.container_type(container)
                if kind not in (SM2_CONTAINER, RSA_CONTAINER):
                    return None  # an empty container
                der = lib.blob("SKF_ExportCertificate", container, 1)
                public_key = lib.blob("SKF_ExportPublicKey", container, 1) if kind == SM2_CONTAINER else b""
                self._keys[(opened.token.token_id, name)] = (kind, public_key)
                has_key = kind == RSA_CONTAINER or bool(public_key)
        except SkfGarbage as exc:
            log.warning("container %s of %s returned garbage: %s", name, opened.token.serial, exc.detail)
            return TokenCertificate(opened.token, object_id, name, b"", False, None, exc)
        except SkfError as exc:
            if exc.code in (SAR["SAR_CERTNOTFOUNTERR"], SAR["SAR_KEYNOTFOUNTERR"]):
                return None  # a container without a signing certificate
            raise translate(exc, opened.token.serial) from None
        error: CertAgentError | None = None
        try:
            info = parse_certificate(der)
        except CertificateUnparsable as exc:
            info, error = None, exc
            log.warning("certificate in container %s of %s is unparsable", name, opened.token.serial)
        if info is not None and info.algorithm is None:
            error = KeyUnusable(info.key_type)
        return TokenCertificate(opened.token, object_id, name, der, has_key, info, error)

    def prepare(self, token: Token) -> None:
        """Nothing to read ahead: an SKF device has no mechanism list."""

    # --- PIN ----------------------------------------------------------------------------------

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        if pin is None:
            raise PinRequired()  # SKF has no PIN-pad path
        with self._opened(token) as opened, self._logged_in(opened, pin):
            log.info("PIN verified on SKF device %s", opened.token.serial)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        if old is None or new is None:
            raise PinRequired()
        check_new_pin(old, new)
        with self._opened(token) as opened:
            self._refuse_if_locked(opened.token)
            try:
                opened.lib.change_pin(opened.app, old.buffer(), new.buffer())
            except SkfError as exc:
                raise translate(exc, opened.token.serial) from None
            log.info("PIN changed on SKF device %s", opened.token.serial)

    def pin_status(self, token: Token) -> PinStatus:
        with self._opened(token) as opened:
            return opened.token.pin

    # --- signing ------------------------------------------------------------------------------

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Log in with ``pin`` and sign ``data`` with the key of container ``cert_id``. The PIN
        state is not read first: a locked device refuses VerifyPIN without counting."""
        if pin is None:
            raise PinRequired()
        try:
            name = cert_id.decode("utf-8")
        except UnicodeDecodeError:
            raise CertificateNotFound(cert_id.hex()) from None
        with self._opened(token, read_pin=False) as opened, self._logged_in(opened, pin):
            lib = opened.lib
            try:
                with lib.container(opened.app, name) as container:
                    signature = self._sign(opened, name, container, data, algorithm)
            except SkfError as exc:
                if exc.call == "SKF_OpenContainer" and exc.code != SAR["SAR_DEVICE_REMOVED"]:
                    raise CertificateNotFound(cert_id.hex()) from None
                raise translate(exc, opened.token.serial) from None
        log.info("signed on SKF device %s with %s", opened.token.serial, algorithm.value)
        return signature

    def _sign(self, opened: _Open, name: str, container: HANDLE, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        lib = opened.lib
        key = (opened.token.token_id, name)
        if key not in self._keys:
            kind = lib.container_type(container)
            public_key = lib.blob("SKF_ExportPublicKey", container, 1) if kind == SM2_CONTAINER else b""
            self._keys[key] = (kind, public_key)
        kind, public_key = self._keys[key]
        if algorithm.key_type is KeyType.SM2:
            if kind != SM2_CONTAINER:
                raise MechanismNotSupported(f"{algorithm.value} needs an SM2 container")
            digest = lib.sm2_digest(opened.device, public_key, SM2_DEFAULT_ID, data)
            return sm2_signature_der(lib.ecc_sign(container, digest))
        if algorithm.padding is Padding.PKCS1V15 and kind == RSA_CONTAINER:
            certificate = parse_certificate(lib.blob("SKF_ExportCertificate", container, 1))
            digest = hashlib.new(algorithm.hash_name, data).digest()
            digest_info = DigestInfo({"digest_algorithm": {"algorithm": algorithm.hash_name}, "digest": digest})
            return lib.rsa_sign(container, digest_info.dump(), (certificate.key_size + 7) // 8)
        if kind == 0:
            raise PrivateKeyNotFound(algorithm.value)
        raise MechanismNotSupported(f"{algorithm.value} on an SKF container of type {kind}")

    # --- new media, unloading -----------------------------------------------------------------

    def rescan(self) -> None:
        """Nothing to do: SKF_EnumDev lists the devices present at every scan."""

    def close(self) -> None:
        self._libs.clear()  # ctypes keeps a loaded library mapped; nothing is finalized in SKF

    # --- internals ----------------------------------------------------------------------------

    def _device_lock(self, token: Token) -> threading.RLock:
        with self._locks_lock:
            return self._device_locks.setdefault(f"{token.module}#{token.serial}", threading.RLock())

    @contextmanager
    def _opened(self, token: Token, *, read_pin: bool = True) -> Iterator[_Open]:
        """Hold the device's lock, find it by its serial, open the token's application (and,
        unless told not to, read its PIN state: GetPINInfo)."""
        lib = self._libs.get(token.module)
        if lib is None:
            raise ModuleLoadFailed(token.module)
        app_name = token.slot_tag
        with self._device_lock(token):
            for first_look in (True, False):
                yielded = False
                try:
                    for name in self._candidate_names(lib, token, use_last=first_look):
                        with lib.device(name) as device:
                            info = lib.device_info(device)
                            if info.serial != token.serial:
                                continue
                            self._names[f"{token.module}#{token.serial}"] = name
                            with lib.application(device, app_name) as app:
                                pin = lib.pin_info(app) if read_pin else None
                                current = _token(token.module, token.slot_id, info, app_name, pin)
                                yielded = True
                                yield _Open(lib, device, app, current)
                                return
                    raise TokenNotPresent(token.serial)
                except SkfError as exc:
                    removed = exc.code == SAR["SAR_DEVICE_REMOVED"]
                    if removed and first_look and not yielded:
                        continue  # the name it was last seen under is gone: look at every device
                    if removed or exc.code == SAR["SAR_APPLICATION_NOT_EXISTS"]:
                        raise TokenNotPresent(token.serial) from None
                    raise translate(exc, token.serial) from None

    def _candidate_names(self, lib: SkfLibrary, token: Token, *, use_last: bool) -> Iterator[str]:
        """The name the device was last seen under first (no enumeration: its serial is checked),
        then every other device present."""
        last = self._names.get(f"{token.module}#{token.serial}") if use_last else None
        if last is not None:
            yield last
        for name in lib.names("SKF_EnumDev", 1):
            if name != last:
                yield name

    @staticmethod
    def _refuse_if_locked(token: Token) -> None:
        if token.pin_state is PinState.LOCKED:
            raise PinLocked(token.serial)  # no point presenting a PIN to a locked device

    @contextmanager
    def _logged_in(self, opened: _Open, pin: Pin) -> Iterator[None]:
        """SKF_VerifyPIN as the user; the application's close (ClearSecureState) logs out."""
        self._refuse_if_locked(opened.token)
        try:
            opened.lib.verify_pin(opened.app, pin.buffer())
        except SkfError as exc:
            error = translate(exc, opened.token.serial)
            log.warning("wrong PIN on SKF device %s: %s", opened.token.serial, error.code)
            raise error from None
        yield


def _token(module: str, index: int, info: structs.DeviceInfo, app: str, pin: tuple[int, int, bool] | None) -> Token:
    """The token for ``app`` of the device; ``pin`` (GetPINInfo) None: not read for this call."""
    entry = default_catalog().for_token(module, info.manufacturer, "")
    label = info.label or app
    return Token(
        module=module,
        slot_id=index,
        label=label,
        serial=info.serial,
        manufacturer=info.manufacturer,
        model="",
        medium=entry.medium if entry and entry.medium else medium_of(label, ""),
        pin=_pin_status(pin),
        flags=("SKF_DEFAULT_PIN",) if pin is not None and pin[2] else (),
        slot_tag=app,
    )


def _pin_status(pin: tuple[int, int, bool] | None) -> PinStatus:
    if pin is None:
        return PinStatus()
    maximum, remain, is_default = pin
    return PinStatus(_pin_state(maximum, remain, is_default), remain, maximum, False, is_default)


def _pin_state(maximum: int, remain: int, is_default: bool) -> PinState:
    if remain == 0:
        return PinState.LOCKED
    if remain == 1:
        return PinState.FINAL_TRY
    if is_default:
        return PinState.TO_BE_CHANGED
    if remain < maximum:
        return PinState.COUNT_LOW
    return PinState.OK


def sm2_signature_der(blob: structs.ECCSIGNATUREBLOB) -> bytes:
    """The blob's r and s (right-aligned in 64 bytes) as DER ``SEQUENCE {r, s}``; a blob no SM2
    signature can be (zero, past the curve's order, bits in the first half) is garbage."""
    raw_r, raw_s = bytes(blob.r), bytes(blob.s)
    if any(raw_r[:32]) or any(raw_s[:32]):
        raise garbage("SKF_ECCSignData", "a signature wider than 256 bits")
    der = der_signature(int.from_bytes(raw_r[32:], "big"), int.from_bytes(raw_s[32:], "big"))
    if der is None:
        raise garbage("SKF_ECCSignData", "an SM2 signature out of range (an all-zero blob?)")
    return der
