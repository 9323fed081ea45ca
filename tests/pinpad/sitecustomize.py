"""A test double at the PyKCS11 boundary for PIN-pad readers, loaded into the agent's worker
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
from pathlib import Path
from typing import Any

import PyKCS11


def _typed_on_the_pad() -> list[str]:
    return Path(os.environ["TEST_PINPAD_FILE"]).read_text(encoding="utf-8").splitlines()


def _record(call: str) -> None:
    with open(os.environ["TEST_PINPAD_FILE"] + ".calls", "a", encoding="utf-8") as calls:
        calls.write(call + "\n")


_get_token_info = PyKCS11.PyKCS11Lib.getTokenInfo
_login = PyKCS11.Session.login
_set_pin = PyKCS11.Session.setPin


def _token_info_with_pin_pad(self: Any, slot: Any) -> Any:
    info = _get_token_info(self, slot)
    info.flags |= PyKCS11.CKF_PROTECTED_AUTHENTICATION_PATH
    return info


def _login_on_the_pad(self: Any, pin: Any, user_type: int = PyKCS11.CKU_USER) -> Any:
    if pin is None:
        _record("C_Login(NULL)")
        pin = _typed_on_the_pad()[0]
    return _login(self, pin, user_type)


def _set_pin_on_the_pad(self: Any, old: Any, new: Any) -> Any:
    if old is None and new is None:
        _record("C_SetPIN(NULL, NULL)")
        typed = _typed_on_the_pad()
        _login(self, typed[0])  # the reader checks the old PIN, then sets the new one
        try:
            return _set_pin(self, typed[0], typed[1])
        finally:
            self.logout()
    return _set_pin(self, old, new)


PyKCS11.PyKCS11Lib.getTokenInfo = _token_info_with_pin_pad
PyKCS11.Session.login = _login_on_the_pad
PyKCS11.Session.setPin = _set_pin_on_the_pad
