"""What CK_TOKEN_INFO says of a token, in the driver-neutral terms of ``drivers.models``.

The flag bits are the PKCS#11 specification's (v2.40, section 3.2, CK_TOKEN_INFO.flags). They stay
inside the PKCS#11 driver: the rest of the agent sees a :class:`PinStatus` and the flags' names.
"""

from __future__ import annotations

from cert_agent.drivers.models import PinState, PinStatus

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


def pin_status_of(flags: int) -> PinStatus:
    """The PIN status the flags tell: tries left only where a flag says it (final try, locked);
    PKCS#11 has no field for the count or the limit (the media catalog may know the limit)."""
    state = pin_state_of(flags)
    tries = {PinState.LOCKED: 0, PinState.FINAL_TRY: 1}.get(state)
    return PinStatus(state, tries, None, bool(flags & CKF_PROTECTED_AUTHENTICATION_PATH))


def flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for name, bit in TOKEN_FLAGS.items() if flags & bit)


def is_initialized(flags: int) -> bool:
    """A blank slot (no CKF_TOKEN_INITIALIZED) is no medium."""
    return bool(flags & CKF_TOKEN_INITIALIZED)
