"""A driver whose every reader has a PIN pad: a double for the reader's keypad.

Why a double: no PKCS#11 module available here reports a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH:
SoftHSM2 answers a login without a PIN with CKR_ARGUMENTS_BAD, and vsmartcard's virtual reader
cannot present a PIN-pad reader). So every token is shown with ``pin_pad`` set, and a call made
*without* a PIN stands for the user typing on the keypad: it goes to the real driver with the
PINs in the file named by $TEST_PINPAD_FILE (line 1: what the user types as the PIN, line 2: the
new PIN). Every call made without a PIN is recorded in that file's ".calls" neighbour, so the
test can see the agent really passed no PIN. SoftHSM2 checks and stores the PINs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.models import PinStatus, Token
from cert_agent.drivers.pin import Pin
from tests.doubles import WrappedDriver


def _typed_on_the_pad() -> list[str]:
    return Path(os.environ["TEST_PINPAD_FILE"]).read_text(encoding="utf-8").splitlines()


def _record(call: str) -> None:
    with open(os.environ["TEST_PINPAD_FILE"] + ".calls", "a", encoding="utf-8") as calls:
        calls.write(call + "\n")


def _with_pad(token: Token) -> Token:
    return replace(token, pin=replace(token.pin, pin_pad=True))


class PinPadDriver(WrappedDriver):
    def tokens(self) -> list[Token]:
        return [_with_pad(token) for token in self.inner.tokens()]

    def pin_status(self, token: Token) -> PinStatus:
        return replace(self.inner.pin_status(token), pin_pad=True)

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        if pin is not None:
            return self.inner.verify_pin(token, pin)
        _record("C_Login(NULL)")
        with Pin(_typed_on_the_pad()[0]) as typed:
            self.inner.verify_pin(token, typed)

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        if pin is not None:
            return self.inner.sign(token, cert_id, pin, data, algorithm)
        _record("C_Login(NULL)")
        with Pin(_typed_on_the_pad()[0]) as typed:
            return self.inner.sign(token, cert_id, typed, data, algorithm)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        if old is not None or new is not None:
            return self.inner.change_pin(token, old, new)
        _record("C_SetPIN(NULL, NULL)")
        typed = _typed_on_the_pad()
        with Pin(typed[0]) as typed_old, Pin(typed[1]) as typed_new:
            self.inner.change_pin(token, typed_old, typed_new)
