"""A test double at the driver's PKCS#11 boundary for PIN-pad readers, loaded into the agent's worker
processes by putting this directory on PYTHONPATH (tests/test_pinpad.py does, and nothing else).

Why a double: no PKCS#11 module available here sets CKF_PROTECTED_AUTHENTICATION_PATH (SoftHSM2
answers a login without a PIN with CKR_ARGUMENTS_BAD, and vsmartcard's virtual reader cannot
present a PIN-pad reader). So, in the processes this is loaded into, every token reports the
flag, and a C_Login or C_SetPIN *without* a PIN stands for the user typing on the reader's
keypad: it is done with the PINs in the file named by $TEST_PINPAD_FILE (line 1: what the user
types as the PIN, line 2: the new PIN). Every call made without a PIN is recorded in that
file's ".calls" neighbour, so the test can see the agent really passed no PIN.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cert_agent.drivers.library import Library
from cert_agent.drivers.models import CKF_PROTECTED_AUTHENTICATION_PATH, Token
from cert_agent.drivers.pkcs11 import Pkcs11Driver


def _typed_on_the_pad() -> list[bytearray]:
    lines = Path(os.environ["TEST_PINPAD_FILE"]).read_text(encoding="utf-8").splitlines()
    return [bytearray(line.encode("utf-8")) for line in lines]


def _record(call: str) -> None:
    with open(os.environ["TEST_PINPAD_FILE"] + ".calls", "a", encoding="utf-8") as calls:
        calls.write(call + "\n")


_token_at = Pkcs11Driver._token_at
_login = Library.login
_set_pin = Library.set_pin


def _token_with_pin_pad(self: Pkcs11Driver, module: str, slot_id: int) -> Token:
    token = _token_at(self, module, slot_id)
    return replace(token, flags=token.flags | CKF_PROTECTED_AUTHENTICATION_PATH)


def _login_on_the_pad(self: Library, session: Any, pin: bytearray | None) -> None:
    if pin is None:
        _record("C_Login(NULL)")
        pin = _typed_on_the_pad()[0]
    _login(self, session, pin)


def _set_pin_on_the_pad(self: Library, session: Any, old: bytearray | None, new: bytearray | None) -> None:
    if old is None and new is None:
        _record("C_SetPIN(NULL, NULL)")
        typed = _typed_on_the_pad()
        _login(self, session, typed[0])  # the reader checks the old PIN, then sets the new one
        try:
            _set_pin(self, session, typed[0], typed[1])
        finally:
            self.logout(session)
        return
    _set_pin(self, session, old, new)


Pkcs11Driver._token_at = _token_with_pin_pad  # type: ignore[method-assign]
Library.login = _login_on_the_pad  # type: ignore[method-assign]
Library.set_pin = _set_pin_on_the_pad  # type: ignore[method-assign]
