"""PIN-pad readers (CKF_PROTECTED_AUTHENTICATION_PATH): the token is marked ``pinPad`` and the
agent logs in and changes the PIN with no PIN from the page, so the reader collects it.

The reader is a test double at the driver's PKCS#11 boundary (tests/pinpad/sitecustomize.py, loaded into a
`cert-agent serve` process of this test's own through PYTHONPATH): no available module or reader
has a PIN pad. Everything else is real: the daemon, its workers, SoftHSM2 checking the PINs,
signing, and storing the new PIN."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.agent import (
    ALLOWED_ORIGIN,
    NONCE,
    Client,
    certificate_of,
    connect,
    free_port,
    running_agent,
    verify_auth_token,
)
from tests.paths import TESTS

PIN_PAD_DOUBLE = TESTS / "doubles" / "pinpad"


@asynccontextmanager
async def agent_with_pin_pads(fixtures: Fixtures, keypad: Path) -> AsyncIterator[Client]:
    """`cert-agent serve` whose driver sees a PIN pad on every reader; a page's connection."""
    port = free_port()
    env = fixtures.env.environ() | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PIN_PAD_DOUBLE), os.environ.get("PYTHONPATH")])),
        "TEST_PINPAD_FILE": str(keypad),
    }
    config = keypad.with_name("agent.toml")
    config.write_text("pin_max_tries = 10\n", encoding="utf-8")  # the media's limit, for "tries left"
    command = [sys.executable, "-m", "cert_agent", "serve", "--config", str(config), "--port", str(port),
               "--allow-origin", ALLOWED_ORIGIN, "--module", fixtures.module]  # fmt: skip
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}/ws", origin=ALLOWED_ORIGIN) as ws,
        ):
            yield Client(ws)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


async def test_a_pin_pad_token_is_marked_and_signs_and_changes_its_pin_with_no_pin_from_the_page(
    fresh_fixtures: Fixtures, tmp_path: Path
) -> None:
    token_id, cert_id = certificate_of(fresh_fixtures, "hairun-ec")
    pin = fresh_fixtures.token_of("hairun-ec").pin
    keypad = tmp_path / "keypad.txt"  # what the user types on the reader's keypad
    async with agent_with_pin_pads(fresh_fixtures, keypad) as client:
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
