"""A test double for a medium that stops answering in the middle of a call, loaded into the agent's
worker processes by putting this directory on PYTHONPATH (tests/harness/hang.py does).

Why a double: a token that hangs while the other tokens of its module go on answering is what a
wedged USB key on an agency's hub does, and no part available here can do it: SoftHSM2 has no
such state, and a stopped software TPM hangs every token it holds (the many-tokens test uses that
too). So, in the processes this is loaded into, C_Login on a token whose serial is a file in
$TEST_HANG_DIR waits until that file is removed, as a C call blocked on the device would, with
the GIL released. Every C_Login that goes on to the module is recorded (the serial, a line) in
$TEST_HANG_DIR/logins, so a test can see which requests reached the token. Everything else is
real.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cert_agent.drivers.library import Library

_login = Library.login


def _login_on_a_medium_that_may_hang(self: Library, session: Any, pin: bytearray | None) -> None:
    serial = session.token.serial.decode("ascii", "replace").strip()
    stalled = os.path.join(os.environ["TEST_HANG_DIR"], serial)
    while os.path.exists(stalled):
        time.sleep(0.02)
    with open(os.path.join(os.environ["TEST_HANG_DIR"], "logins"), "a", encoding="utf-8") as logins:
        logins.write(serial + "\n")
    _login(self, session, pin)


Library.login = _login_on_a_medium_that_may_hang  # type: ignore[method-assign]
