"""Plain values the driver returns: tokens, their PIN state and medium, and certificates.

Free of the PKCS#11 binding, so that the daemon's own process (which never loads a PKCS#11 module) can use
them: the token flag bits are the PKCS#11 specification's values (v2.40, CK_TOKEN_INFO.flags).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cert_agent.common.errors import CertAgentError
from cert_agent.common.taxpayer_id import TaxpayerId

# CK_TOKEN_INFO.flags bits (PKCS#11 v2.40, section 3.2)
CKF_WRITE_PROTECTED = 0x00000002
CKF_LOGIN_REQUIRED = 0x00000004
CKF_USER_PIN_INITIALIZED = 0x00000008
CKF_PROTECTED_AUTHENTICATION_PATH = 0x00000100
CKF_TOKEN_INITIALIZED = 0x00000400
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000
CKF_USER_PIN_TO_BE_CHANGED = 0x00080000
TOKEN_FLAGS = {
    "CKF_LOGIN_REQUIRED": CKF_LOGIN_REQUIRED,
    "CKF_PROTECTED_AUTHENTICATION_PATH": CKF_PROTECTED_AUTHENTICATION_PATH,
    "CKF_WRITE_PROTECTED": CKF_WRITE_PROTECTED,
    "CKF_USER_PIN_INITIALIZED": CKF_USER_PIN_INITIALIZED,
    "CKF_USER_PIN_COUNT_LOW": CKF_USER_PIN_COUNT_LOW,
    "CKF_USER_PIN_FINAL_TRY": CKF_USER_PIN_FINAL_TRY,
    "CKF_USER_PIN_LOCKED": CKF_USER_PIN_LOCKED,
    "CKF_USER_PIN_TO_BE_CHANGED": CKF_USER_PIN_TO_BE_CHANGED,
    "CKF_TOKEN_INITIALIZED": CKF_TOKEN_INITIALIZED,
}


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
    """The user PIN's state as the token flags report it (PKCS#11 CK_TOKEN_INFO.flags)."""

    OK = "ok"
    COUNT_LOW = "count_low"  # CKF_USER_PIN_COUNT_LOW: a recent attempt failed
    FINAL_TRY = "final_try"  # CKF_USER_PIN_FINAL_TRY: one more failure locks it
    LOCKED = "locked"  # CKF_USER_PIN_LOCKED
    TO_BE_CHANGED = "to_be_changed"  # CKF_USER_PIN_TO_BE_CHANGED
    NOT_INITIALIZED = "not_initialized"  # no CKF_USER_PIN_INITIALIZED


def pin_state_of(flags: int) -> PinState:
    if flags & CKF_USER_PIN_LOCKED:
        return PinState.LOCKED
    if not flags & CKF_USER_PIN_INITIALIZED:
        return PinState.NOT_INITIALIZED
    if flags & CKF_USER_PIN_FINAL_TRY:
        return PinState.FINAL_TRY
    if flags & CKF_USER_PIN_TO_BE_CHANGED:
        return PinState.TO_BE_CHANGED
    if flags & CKF_USER_PIN_COUNT_LOW:
        return PinState.COUNT_LOW
    return PinState.OK


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
    key_type: str  # "RSA" or "EC"
    key_size: int
    curve: str | None
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    taxpayer_id: TaxpayerId | None

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
            "keyUsage": list(self.key_usage),
            "extendedKeyUsage": list(self.extended_key_usage),
            "taxpayerId": tid.value if tid else None,
            "taxpayerIdValid": tid.is_valid if tid else None,
        }


@dataclass(frozen=True)
class Token:
    """One token in one slot of one module, as C_GetTokenInfo described it."""

    module: str
    slot_id: int
    label: str
    serial: str
    manufacturer: str
    model: str
    flags: int
    medium: Medium
    slot_tag: str = ""  # set when the serial alone does not tell this token apart (see token_id)
    reader: str = ""  # CK_SLOT_INFO.slotDescription: for smart-card modules, the reader's name

    @property
    def token_id(self) -> str:
        """The module path and the token serial: stable across re-insertion. When the module
        shows several tokens with one serial (or none), the slot is added (``#slot-N``): stable
        while the token is present."""
        base = f"{self.module}#{self.serial}"
        return f"{base}#{self.slot_tag}" if self.slot_tag else base

    @property
    def pin_state(self) -> PinState:
        return pin_state_of(self.flags)

    @property
    def pin_pad(self) -> bool:
        """The PIN is typed on the reader's own keypad (CKF_PROTECTED_AUTHENTICATION_PATH): the
        agent logs in with no PIN and the reader collects it."""
        return bool(self.flags & CKF_PROTECTED_AUTHENTICATION_PATH)

    @property
    def flag_names(self) -> list[str]:
        return [name for name, bit in TOKEN_FLAGS.items() if self.flags & bit]

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
            "flags": self.flag_names,
            "reader": self.reader,
        }


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on a token. ``info`` is None exactly when ``error`` says why."""

    token: Token
    object_id: bytes  # CKA_ID, shared with the private key
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
class ModuleProblem:
    """A module that did not load or could not be listed; the other modules go on."""

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
