"""The certificate PIN (证书密码) as a secret value, and the policy for a new PIN.

:class:`Pin` keeps the PIN in a mutable buffer that :meth:`Pin.wipe` overwrites, and its
``repr``/``str`` never show it, so a PIN that reaches a log line or a traceback by mistake
shows up as ``Pin(***)``. Python cannot promise that no copy survives in memory (the C binding
makes none: the PIN's buffer is passed to the call), and no copy is kept by this project after the call that needed it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

from cert_agent.drivers.errors import PinPolicyViolation, PinRequired

INITIAL_PIN = "88888888"  # the well-known initial certificate PIN of many media ("8个8")
MIN_LENGTH = 6
MAX_LENGTH = 16


class Pin:
    __slots__ = ("_buffer",)

    def __init__(self, value: str | bytes) -> None:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if not raw:
            raise PinRequired()
        self._buffer = bytearray(raw)

    def reveal(self) -> bytes:
        """The PIN bytes, for the one PKCS#11 call that needs them."""
        return bytes(self._buffer)

    def buffer(self) -> bytearray:
        """The PIN's own buffer, handed to C_Login / C_SetPIN without a copy; wiped with the Pin."""
        return self._buffer

    def __len__(self) -> int:
        return len(self._buffer)

    def equals(self, other: Pin | str) -> bool:
        other_bytes = other.reveal() if isinstance(other, Pin) else other.encode("utf-8")
        return bytes(self._buffer) == other_bytes

    def wipe(self) -> None:
        for i in range(len(self._buffer)):
            self._buffer[i] = 0
        self._buffer = bytearray()

    def __enter__(self) -> Pin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()

    def __repr__(self) -> str:
        return "Pin(***)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickled into a log, a queue or a file by accident
        raise TypeError("a Pin cannot be pickled")


def wiped(pin: Pin | None) -> AbstractContextManager[Pin | None]:
    """``with wiped(pin):`` wipes the PIN when the block ends; nothing to wipe for a PIN pad."""
    return pin if pin is not None else nullcontext(None)


def pin_buffer(pin: Pin | None) -> bytearray | None:
    """The PIN's buffer for C_Login / C_SetPIN, or None: no PIN, the reader's PIN pad asks for it."""
    return pin.buffer() if pin is not None else None


def check_new_pin(old: Pin, new: Pin) -> None:
    """Refuse a new PIN that breaks the policy; runs before any token is touched.

    The rules come from the tax bureau's guidance: 6-16 characters, not the initial PIN, and a
    change must change something. Characters are printable ASCII, what every medium's PIN pad
    and driver accepts.
    """
    raw = new.reveal()
    if not MIN_LENGTH <= len(raw.decode("utf-8", "replace")) <= MAX_LENGTH:
        raise PinPolicyViolation("length")
    if any(b < 0x21 or b > 0x7E for b in raw):
        raise PinPolicyViolation("charset")
    if new.equals(old):
        raise PinPolicyViolation("same_as_old")
    if new.equals(INITIAL_PIN):
        raise PinPolicyViolation("initial_pin")
