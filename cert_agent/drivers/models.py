"""Plain values every driver returns: tokens, their PIN status and medium, and certificates.

Free of any library binding, so that the daemon's own process (which never loads a vendor library)
can use them, and the same for every interface a driver speaks (PKCS#11, SKF): what a library
reports in its own terms (PKCS#11 token flags, SKF PIN info) is turned into these fields inside
its driver (``drivers/pkcs11/tokeninfo.py``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cert_agent.common.algorithms import default_algorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.common.taxpayer_id import TaxpayerId


class Medium(StrEnum):
    """The kind of tax medium a token is, shown to the taxpayer by its Chinese name."""

    TAX_UKEY = "税务UKey"
    GOLDEN_TAX_DISK = "金税盘"
    TAX_CONTROL_DISK = "税控盘"
    OTHER = "其他介质"


def medium_of(label: str, model: str) -> Medium:
    """Tell the medium from the token's label or model, where vendors name it."""
    text = f"{label} {model}".upper()
    if "金税盘" in text:
        return Medium.GOLDEN_TAX_DISK
    if "税控盘" in text:
        return Medium.TAX_CONTROL_DISK
    if "UKEY" in text:
        return Medium.TAX_UKEY
    return Medium.OTHER


class PinState(StrEnum):
    """The user PIN's state, as the medium reports it (each driver maps its library's words)."""

    OK = "ok"
    COUNT_LOW = "count_low"  # a recent attempt failed
    FINAL_TRY = "final_try"  # one more failure locks it
    LOCKED = "locked"
    TO_BE_CHANGED = "to_be_changed"  # still the initial PIN, or expired
    NOT_INITIALIZED = "not_initialized"  # no user PIN set


@dataclass(frozen=True)
class PinStatus:
    """What the medium says of its user PIN: its state, and the tries left before it locks and
    the retry limit where the library reports them (SKF does; PKCS#11 says only "final try" and
    "locked", so ``tries_left`` is 1 or 0 there and None otherwise)."""

    state: PinState = PinState.OK
    tries_left: int | None = None
    max_tries: int | None = None
    pin_pad: bool = False  # the PIN is typed on the reader's own keypad, never by the agent
    is_default: bool | None = None  # the PIN is still the issuer's initial one (None: not reported)


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says (``drivers.certificate.parse_certificate`` reads it)."""

    der: bytes
    subject: str
    subject_cn: str | None
    issuer: str
    serial_hex: str
    not_before: datetime
    not_after: datetime
    key_type: str  # "RSA", "EC" (NIST curves), "SM2", or "unsupported"
    key_size: int
    curve: str | None
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    taxpayer_id: TaxpayerId | None

    @property
    def algorithm(self) -> str | None:
        """What the agent signs with this certificate's key by default (None: it cannot)."""
        if self.key_type not in ("RSA", "EC", "SM2"):
            return None
        return default_algorithm(self.key_type, self.key_size).value

    def to_dict(self) -> dict[str, Any]:
        tid = self.taxpayer_id
        return {
            "subject": self.subject,
            "subjectCN": self.subject_cn,
            "issuer": self.issuer,
            "serialNumber": self.serial_hex,
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
            "keyType": self.key_type,
            "keySize": self.key_size,
            "curve": self.curve,
            "algorithm": self.algorithm,
            "keyUsage": list(self.key_usage),
            "extendedKeyUsage": list(self.extended_key_usage),
            "taxpayerId": tid.value if tid else None,
            "taxpayerIdValid": tid.is_valid if tid else None,
        }


@dataclass(frozen=True)
class Token:
    """One medium as its library shows it: for PKCS#11 a token in a slot of a module; for SKF an
    application of a device. ``module`` is the library's path, ``slot_id`` where the library
    shows the medium now (a PKCS#11 slot, an SKF device's index)."""

    module: str
    slot_id: int
    label: str
    serial: str
    manufacturer: str
    model: str
    medium: Medium
    pin: PinStatus = PinStatus()
    flags: tuple[str, ...] = ()  # the library's own words for the medium's state (CKF_... names)
    slot_tag: str = ""  # set when the serial alone does not tell this token apart (see token_id)
    reader: str = ""  # for smart-card media, the reader's name as the library gives it

    @property
    def token_id(self) -> str:
        """The module path and the token serial: stable across re-insertion. When the module
        shows several tokens with one serial (or none), the slot is added (``#slot-N``): stable
        while the token is present."""
        base = f"{self.module}#{self.serial}"
        return f"{base}#{self.slot_tag}" if self.slot_tag else base

    @property
    def pin_state(self) -> PinState:
        return self.pin.state

    @property
    def pin_pad(self) -> bool:
        """The PIN is typed on the reader's own keypad: the agent presents no PIN and the
        reader collects it."""
        return self.pin.pin_pad

    def with_pin_state(self, state: PinState) -> Token:
        """This token as shown with another PIN state (the daemon's inference)."""
        tries = {PinState.LOCKED: 0, PinState.FINAL_TRY: 1}.get(state, self.pin.tries_left)
        return replace(self, pin=replace(self.pin, state=state, tries_left=tries))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenId": self.token_id,
            "module": self.module,
            "slotId": self.slot_id,
            "label": self.label,
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "medium": self.medium.value,
            "pinState": self.pin_state.value,
            "pinPad": self.pin_pad,
            "flags": list(self.flags),
            "reader": self.reader,
        }


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on a token. ``info`` is None exactly when ``error`` says why."""

    token: Token
    object_id: bytes  # what names the certificate and its key on the medium (PKCS#11 CKA_ID)
    object_label: str
    der: bytes
    has_private_key: bool
    info: CertificateInfo | None
    error: CertAgentError | None

    @property
    def cert_id(self) -> str:
        return self.object_id.hex()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenId": self.token.token_id,
            "certId": self.cert_id,
            "label": self.object_label,
            "hasPrivateKey": self.has_private_key,
            "certificate": base64.b64encode(self.der).decode("ascii"),
            "info": self.info.to_dict() if self.info else None,
            "error": self.error.to_dict() if self.error else None,
        }


@dataclass(frozen=True)
class LibraryProblem:
    """A library (PKCS#11 module, SKF library) that did not load or could not be listed; the
    others go on."""

    module: str
    error: CertAgentError

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "error": self.error.to_dict()}


@dataclass(frozen=True)
class MediumProblem:
    """A card in a reader that no loaded module shows a token for: its driver is missing.
    ``driver`` and ``medium`` are the media catalog's, when it knows the ATR."""

    reader: str
    atr: bytes
    error: CertAgentError
    driver: str | None = None
    driver_modules: tuple[str, ...] = ()
    medium: Medium | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "atr": self.atr.hex().upper(),
            "medium": self.medium.value if self.medium else None,
            "driver": {"name": self.driver, "modules": list(self.driver_modules)} if self.driver else None,
            "error": self.error.to_dict(),
        }
