"""SKF return codes (SAR_*, GM/T 0016-2012 appendix A): the ones the agent tells apart, and the
typed error each becomes. A library that returns garbage is ``SKF_GARBAGE`` for its device only."""

from __future__ import annotations

from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.errors import (
    DeviceRemoved,
    PinIncorrect,
    PinLenRange,
    PinLocked,
    SkfFailure,
    SkfGarbage,
)

SAR = {
    "SAR_OK": 0x00000000,
    "SAR_FAIL": 0x0A000001,
    "SAR_NOTSUPPORTYETERR": 0x0A000003,
    "SAR_INVALIDHANDLEERR": 0x0A000005,
    "SAR_INVALIDPARAMERR": 0x0A000006,
    "SAR_KEYNOTFOUNTERR": 0x0A00001B,
    "SAR_CERTNOTFOUNTERR": 0x0A00001C,
    "SAR_BUFFER_TOO_SMALL": 0x0A000020,
    "SAR_DEVICE_REMOVED": 0x0A000023,
    "SAR_PIN_INCORRECT": 0x0A000024,
    "SAR_PIN_LOCKED": 0x0A000025,
    "SAR_PIN_INVALID": 0x0A000026,
    "SAR_PIN_LEN_RANGE": 0x0A000027,
    "SAR_USER_ALREADY_LOGGED_IN": 0x0A000028,
    "SAR_USER_TYPE_INVALID": 0x0A00002A,
    "SAR_USER_NOT_LOGGED_IN": 0x0A00002D,
    "SAR_APPLICATION_NOT_EXISTS": 0x0A00002E,
}
_NAMES = {code: name for name, code in SAR.items()}


class SkfError(Exception):
    """A call that returned a SAR other than SAR_OK (``retries``: what VerifyPIN/ChangePIN said)."""

    def __init__(self, call: str, code: int, retries: int | None = None) -> None:
        super().__init__(f"{call}: {sar_name(code)}")
        self.call = call
        self.code = code
        self.retries = retries

    def with_retries(self, retries: int) -> SkfError:
        return SkfError(self.call, self.code, retries)


def sar_name(code: int) -> str:
    return _NAMES.get(code, f"SAR_0x{code:08X}")


def garbage(call: str, what: str) -> SkfGarbage:
    return SkfGarbage(f"{call} returned {what}")


def translate(exc: SkfError, serial: str) -> CertAgentError:
    """The typed error for a failed SKF call on the device with ``serial``."""
    name = sar_name(exc.code)
    if exc.code == SAR["SAR_DEVICE_REMOVED"]:
        return DeviceRemoved(f"{serial}: {exc.call} {name}")
    if exc.code == SAR["SAR_PIN_LOCKED"]:
        return PinLocked(serial)
    if exc.code == SAR["SAR_PIN_INCORRECT"]:
        if exc.retries == 0:
            return PinLocked(serial)  # the device's own count reached 0: locked now
        return PinIncorrect(serial, tries_left=exc.retries)
    if exc.code in (SAR["SAR_PIN_LEN_RANGE"], SAR["SAR_PIN_INVALID"]):
        return PinLenRange(name)
    return SkfFailure(f"{exc.call}: {name}")
