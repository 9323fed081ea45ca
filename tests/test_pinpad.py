"""PIN-pad readers (CKF_PROTECTED_AUTHENTICATION_PATH): the token is marked ``pinPad`` and the
agent logs in and changes the PIN with no PIN from the page, so the reader collects it.

The reader is a test double at the PyKCS11 boundary (tests/pinpad/sitecustomize.py, loaded into
the agent's worker processes only): no available module or reader has a PIN pad. Everything
else is real: SoftHSM2 checks the PINs, signs, and stores the new PIN."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from softhsm_fixtures import Fixtures
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, certificate_of, connect, running_agent, verify_auth_token

PIN_PAD_DOUBLE = Path(__file__).parent / "pinpad"


@pytest.fixture
def keypad(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What the user types on the reader's keypad (written by each test)."""
    typed = tmp_path / "keypad.txt"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PIN_PAD_DOUBLE), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TEST_PINPAD_FILE", str(typed))
    return typed


async def test_a_pin_pad_token_is_marked_and_signs_and_changes_its_pin_with_no_pin_from_the_page(
    fresh_fixtures: Fixtures, keypad: Path
) -> None:
    token_id, cert_id = certificate_of(fresh_fixtures, "hairun-ec")
    pin = fresh_fixtures.token_of("hairun-ec").pin
    async with running_agent(fresh_fixtures) as agent, connect(agent) as client:
        tokens = (await client.call("listCertificates"))["result"]["tokens"]
        assert next(t for t in tokens if t["tokenId"] == token_id)["pinPad"] is True

        keypad.write_text(f"{pin}\n", encoding="utf-8")
        reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, challengeNonce=NONCE)
        verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
        assert reply["result"]["initialPin"] is False  # unknown on a keypad: never claimed

        keypad.write_text("000000\n", encoding="utf-8")  # the user mistypes on the keypad
        wrong = await client.call("verifyPin", tokenId=token_id)
        assert wrong["error"]["code"] == "PIN_INCORRECT" and wrong["error"]["triesLeft"] == 9

        keypad.write_text(f"{pin}\nQd2026tax\n", encoding="utf-8")
        changed = await client.call("changePin", tokenId=token_id)
        assert changed.get("result") == {"changed": True}, changed
        keypad.write_text("Qd2026tax\n", encoding="utf-8")
        assert "result" in await client.call("verifyPin", tokenId=token_id)
    calls = Path(str(keypad) + ".calls").read_text(encoding="utf-8").splitlines()
    assert calls.count("C_SetPIN(NULL, NULL)") == 1 and calls.count("C_Login(NULL)") >= 3


async def test_a_token_without_a_pin_pad_still_needs_the_pin(fresh_fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fresh_fixtures, "hairun-ec")
    async with running_agent(fresh_fixtures) as agent, connect(agent) as client:
        tokens = (await client.call("listCertificates"))["result"]["tokens"]
        assert next(t for t in tokens if t["tokenId"] == token_id)["pinPad"] is False
        reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, challengeNonce=NONCE)
    assert reply["error"]["code"] == "BAD_REQUEST" and reply["error"]["field"] == "pin"
