"""The agent on a second real PKCS#11 implementation: tpm2-pkcs11 over a software TPM
(swtpm + tpm2-abrmd), whose dictionary-attack protection really locks the PIN and whose tokens
all have the serial 0000000000000000 and a NUL-padded model string."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.serialization import Encoding

from cert_agent.agent.instance import InstanceLock
from softhsm_fixtures import Fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.agent import (
    ALLOWED_ORIGIN,
    NONCE,
    Client,
    RunningAgent,
    connect,
    free_port,
    running_agent,
    verify_auth_token,
)
from tests.harness.tpm import SoftwareTpm, TpmToken, tpm_available

pytestmark = pytest.mark.skipif(  # never skipped in CI, where scripts/setup.sh installs them
    not tpm_available() and not os.environ.get("CI"),
    reason="tpm2-pkcs11, swtpm and tpm2-abrmd are not installed (scripts/setup.sh installs them)",
)


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftwareTpm]:
    running = SoftwareTpm(tmp_path_factory.mktemp("tpm"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tpm_tokens(tpm: SoftwareTpm) -> dict[str, TpmToken]:
    hairun, lanhai = TAXPAYERS["hairun"], TAXPAYERS["lanhai"]
    return {
        "hairun": tpm.add_token("TPM 海润贸易", "112233", hairun.name, hairun.taxpayer_id),
        "lanhai": tpm.add_token("TPM 蓝海制造", "88888888", lanhai.name, lanhai.taxpayer_id),
    }


@pytest_asyncio.fixture
async def tpm_agent(
    fixtures: Fixtures, tpm: SoftwareTpm, tpm_tokens: dict[str, TpmToken]
) -> AsyncIterator[RunningAgent]:
    async with running_agent(fixtures, modules=(fixtures.module, tpm.module)) as agent:
        yield agent


async def authenticate(client: Client, entry: dict[str, Any], pin: str) -> dict[str, Any]:
    """authenticate with the token's first certificate."""
    cert_id = entry["certificates"][0]["certId"]
    return await client.call("authenticate", tokenId=entry["tokenId"], certId=cert_id, pin=pin, challengeNonce=NONCE)


async def listed(client: Client, label: str) -> dict[str, Any]:
    tokens = (await client.call("listCertificates"))["result"]["tokens"]
    return next(t for t in tokens if t["label"] == label)


async def test_tpm_tokens_with_one_serial_are_listed_apart_beside_softhsm(
    tpm_agent: RunningAgent, tpm_tokens: dict[str, TpmToken]
) -> None:
    async with connect(tpm_agent) as client:
        tokens = (await client.call("listCertificates"))["result"]["tokens"]
    ids = [t["tokenId"] for t in tokens]
    assert len(ids) == len(set(ids))  # every token its own id, the TPM's twins included
    tpm_listed = [t for t in tokens if t["label"] in {tpm_tokens["hairun"].label, tpm_tokens["lanhai"].label}]
    assert len(tpm_listed) == 2 and all(t["serial"] == "0000000000000000" for t in tpm_listed)
    assert all("\x00" not in t["model"] and t["model"] == t["model"].strip() for t in tpm_listed)
    taxpayers = {t["certificates"][0]["info"]["taxpayerId"] for t in tpm_listed}
    assert taxpayers == {TAXPAYERS["hairun"].taxpayer_id, TAXPAYERS["lanhai"].taxpayer_id}


async def test_authenticate_on_the_tpm_gives_a_signature_that_verifies(
    tpm_agent: RunningAgent, tpm_tokens: dict[str, TpmToken]
) -> None:
    token = tpm_tokens["hairun"]
    async with connect(tpm_agent) as client:
        entry = await listed(client, token.label)
        reply = await authenticate(client, entry, token.pin)
    auth = reply["result"]["authToken"]
    assert base64.b64decode(auth["unverifiedCertificate"]) == token.certificate.public_bytes(Encoding.DER)
    verify_auth_token(auth, ALLOWED_ORIGIN, NONCE)  # pyca/cryptography, with the certificate's key


async def test_change_pin_on_the_tpm_then_the_new_pin_authenticates(
    tpm_agent: RunningAgent, tpm_tokens: dict[str, TpmToken]
) -> None:
    token = tpm_tokens["lanhai"]
    async with connect(tpm_agent) as client:
        entry = await listed(client, token.label)
        changed = await client.call("changePin", tokenId=entry["tokenId"], oldPin=token.pin, newPin="Qd2026tax")
        assert changed.get("result") == {"changed": True}, changed
        reply = await authenticate(client, entry, "Qd2026tax")
        verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
        back = await client.call("changePin", tokenId=entry["tokenId"], oldPin="Qd2026tax", newPin="Hr2026tax")
        assert back.get("result") == {"changed": True}


async def test_wrong_pins_until_the_tpm_locks_then_an_unlock_elsewhere_is_noticed(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    """A TPM of its own (its lockout covers every token on it): three wrong PINs lock it for real;
    the agent says PIN_LOCKED and pinState "locked" with an event though the module never sets
    a lock flag; the right PIN is refused too; after the lockout is cleared outside the agent
    (as a vendor's unlock tool would), the next try succeeds and the state returns to "ok"."""
    tpm = SoftwareTpm(tmp_path / "tpm")
    tpm.start()
    try:
        tpm.set_lockout(3)
        token = tpm.add_token("TPM 锁定测试", "112233", TAXPAYERS["hairun"].name, TAXPAYERS["hairun"].taxpayer_id)
        config = tmp_path / "agent.toml"
        config.write_text(f'allowed_origins = ["{ALLOWED_ORIGIN}"]\n', encoding="utf-8")
        port = free_port()
        with InstanceLock("serve", port):  # recorded as `cert-agent serve` records itself, for the CLI
            async with running_agent(fixtures, port=port, modules=(tpm.module,)) as agent, connect(agent) as client:
                await locked_then_unlocked_elsewhere(agent, client, tpm, token, config)
    finally:
        tpm.stop()


async def locked_then_unlocked_elsewhere(
    agent: RunningAgent, client: Client, tpm: SoftwareTpm, token: TpmToken, config: Path
) -> None:
    entry = await listed(client, token.label)
    assert entry["pinState"] == "ok"
    token_id = entry["tokenId"]
    replies = [await client.call("verifyPin", tokenId=token_id, pin=f"00000{n}") for n in range(4)]
    codes = [r["error"]["code"] for r in replies]
    assert codes[:3] == ["PIN_INCORRECT"] * 3 and codes[3] == "PIN_LOCKED", codes
    assert await pin_state_event(client, "locked")
    assert (await listed(client, token.label))["pinState"] == "locked"
    right = await client.call("verifyPin", tokenId=token_id, pin=token.pin)
    assert right["error"]["code"] == "PIN_LOCKED"  # the TPM refuses even the right PIN
    assert await cli_pin_state(tpm, config, token.label) == "locked"  # the CLI asks the agent

    tpm.clear_lockout()
    async with connect(agent) as later:  # this connection has used its 5 tries a minute
        again = await later.call("verifyPin", tokenId=token_id, pin=token.pin)
        assert again.get("result") is not None, again
        assert await pin_state_event(later, "ok")
        assert (await listed(later, token.label))["pinState"] == "ok"
    assert await cli_pin_state(tpm, config, token.label) == "ok"


async def cli_pin_state(tpm: SoftwareTpm, config: Path, label: str) -> str:
    """``cert-agent tokens --json``, as a user runs it beside the agent: the token's pinState."""
    command = [sys.executable, "-m", "cert_agent", "tokens", "--json", "--module", tpm.module, "--config", str(config)]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, check=False)
    tokens = json.loads(result.stdout)["tokens"]
    return str(next(t for t in tokens if t["label"] == label)["pinState"])


async def pin_state_event(client: Client, state: str) -> dict[str, Any]:
    while True:
        event = await client.event("tokenChanged")
        if event["data"]["pinState"] == state:
            return event
