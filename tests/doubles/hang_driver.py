"""A driver whose media can stop answering in the middle of a call: a double for a wedged key.

Why a double: a token that hangs while the other tokens of its module go on answering is what a
wedged USB key on an agency's hub does, and no part available here can do it: SoftHSM2 has no
such state, and a stopped software TPM hangs every token it holds (the many-tokens test uses that
too). So a PIN-bearing call on a token whose serial is a file in $TEST_HANG_DIR waits until that
file is removed, on the token's own lane, as a call blocked on the device would. Every call that
goes on to the real driver is recorded (the serial, a line) in $TEST_HANG_DIR/logins, so a test
can see which requests reached the token. Everything else is real.
"""

from __future__ import annotations

import os
import time

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.models import Token
from cert_agent.drivers.pin import Pin
from tests.doubles import WrappedDriver


def _reach(token: Token) -> None:
    directory = os.environ["TEST_HANG_DIR"]
    while os.path.exists(os.path.join(directory, token.serial)):
        time.sleep(0.02)
    with open(os.path.join(directory, "logins"), "a", encoding="utf-8") as logins:
        logins.write(token.serial + "\n")


class HangingDriver(WrappedDriver):
    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        _reach(token)
        self.inner.verify_pin(token, pin)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        _reach(token)
        self.inner.change_pin(token, old, new)

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        _reach(token)
        return self.inner.sign(token, cert_id, pin, data, algorithm)
