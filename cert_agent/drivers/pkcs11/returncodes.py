"""PKCS#11 return codes: which ones the agent tells apart, and the typed error for each.

python-pkcs11 raises one exception class per return code; the calls made through the module's
own function list (``library.py``) raise :class:`~cert_agent.drivers.pkcs11.library.ReturnCode`.
Both become a :class:`~cert_agent.common.errors.CertAgentError` with a stable code here, and
nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pkcs11.exceptions as p11

from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.errors import (
    DeviceError,
    DeviceRemoved,
    MechanismNotSupported,
    PinExpired,
    PinIncorrect,
    PinLenRange,
    PinLocked,
    Pkcs11Failure,
    TokenWriteProtected,
)
from cert_agent.drivers.pkcs11.library import ReturnCode

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
PKCS11_ERRORS = (p11.PKCS11Error, ReturnCode)


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
    except PKCS11_ERRORS as exc:
        raise translate(exc) from None
