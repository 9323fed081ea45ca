"""SM2 media through a real agent: the software SKF device (``softskf``) loaded by the agent's own
worker process, as a vendor's SKF library would be. Every SM2 signature is checked by the
``openssl`` command, not by the project's code."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import signed_data
from softhsm_fixtures import Fixtures
from softhsm_fixtures.skf_build import SkfFixtures
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, Client, connect, free_port, running_agent
from tests.harness.daemon import Daemon
from tests.harness.sm2 import sm2_verifies


async def _tokens(client: Client) -> dict[str, dict[str, Any]]:
    reply = await client.call("listCertificates")
    return {t["tokenId"]: t for t in reply["result"]["tokens"]}


def _check_sm2(skf: SkfFixtures, cert_name: str, auth_token: dict[str, str]) -> None:
    assert auth_token["algorithm"] == "SM2SM3"
    assert base64.b64decode(auth_token["unverifiedCertificate"]) == skf.certificate_der(cert_name)
    data = signed_data(ALLOWED_ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
    assert sm2_verifies(skf.certificate_der(cert_name), data, base64.b64decode(auth_token["signature"]))


async def test_an_sm2_ukey_is_listed_and_logs_in_with_an_sm2_signature_bound_to_the_origin(
    fixtures: Fixtures, skf_fixtures: SkfFixtures
) -> None:
    async with running_agent(fixtures, modules=(skf_fixtures.library,)) as agent, connect(agent) as client:
        tokens = await _tokens(client)
        token = tokens[skf_fixtures.token_id("sm2-ukey")]
        assert (token["medium"], token["pinState"], token["label"]) == ("税务UKey", "ok", "税务UKey 海润贸易 SM2")
        (cert,) = token["certificates"]
        assert cert["info"]["algorithm"] == "SM2SM3" and cert["info"]["keyType"] == "SM2"
        reply = await client.call(
            "authenticate",
            tokenId=token["tokenId"],
            certId=cert["certId"],
            pin=skf_fixtures.medium("sm2-ukey").pin,
            challengeNonce=NONCE,
        )
    result = reply["result"]
    _check_sm2(skf_fixtures, "hairun-sm2", result["authToken"])
    assert result["initialPin"] is False


async def test_the_devices_default_flag_is_the_initial_pin_the_page_is_told_of(
    fixtures: Fixtures, skf_fixtures: SkfFixtures
) -> None:
    medium = skf_fixtures.medium("sm2-default-pin")
    async with running_agent(fixtures, modules=(skf_fixtures.library,)) as agent, connect(agent) as client:
        reply = await client.call(
            "authenticate",
            tokenId=skf_fixtures.token_id("sm2-default-pin"),
            certId=skf_fixtures.cert("chuxin-sm2").cert_id,
            pin=medium.pin,
            challengeNonce=NONCE,
        )
    assert reply["result"]["initialPin"] is True  # the device says so; its PIN is not 88888888
    _check_sm2(skf_fixtures, "chuxin-sm2", reply["result"]["authToken"])


async def test_an_ecdsa_algorithm_is_refused_for_an_sm2_certificate(
    fixtures: Fixtures, skf_fixtures: SkfFixtures
) -> None:
    async with running_agent(fixtures, modules=(skf_fixtures.library,)) as agent, connect(agent) as client:
        reply = await client.call(
            "authenticate",
            tokenId=skf_fixtures.token_id("sm2-ukey"),
            certId=skf_fixtures.cert("hairun-sm2").cert_id,
            pin=skf_fixtures.medium("sm2-ukey").pin,
            challengeNonce=NONCE,
            algorithm="ES256",
        )
    assert reply["error"]["code"] == "BAD_REQUEST" and reply["error"]["field"] == "algorithm"


async def test_wrong_pins_report_the_devices_own_tries_and_the_last_one_is_kept_for_the_user(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    skf = fresh_skf_fixtures
    token_id = skf.token_id("sm2-ukey")
    limits = {"pin_failures_per_connection": 50, "pin_failures_per_origin": 50, "pin_failures_per_token": 50}
    async with (
        running_agent(fixtures, modules=(skf.library,), pin_max_tries=None, **limits) as agent,
        connect(agent) as client,
    ):
        told = []
        for _ in range(5):
            reply = await client.call("verifyPin", tokenId=token_id, pin="000000")
            told.append(reply["error"].get("triesLeft"))
        assert told == [5, 4, 3, 2, 1]  # the device's count (its limit, 6, from GetPINInfo)
        assert (await _tokens(client))[token_id]["pinState"] == "final_try"
        held = await client.call("verifyPin", tokenId=token_id, pin=skf.medium("sm2-ukey").pin)
        assert held["error"]["code"] == "PIN_TRIES_RESERVED"  # no page spends the last try
    assert skf.store.pin_state("dev-sm2-ukey", "SM2")["remain"] == "1"


async def test_a_locked_device_is_shown_locked_and_no_pin_is_presented_to_it(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    skf = fresh_skf_fixtures
    token_id = skf.token_id("sm2-locked")
    async with running_agent(fixtures, modules=(skf.library,)) as agent, connect(agent) as client:
        assert (await _tokens(client))[token_id]["pinState"] == "locked"
        reply = await client.call("verifyPin", tokenId=token_id, pin=skf.medium("sm2-locked").pin)
    assert reply["error"]["code"] in ("PIN_LOCKED", "PIN_TRIES_RESERVED")
    assert skf.store.pin_state("dev-sm2-locked", "SM2")["remain"] == "0"


async def test_a_pin_changed_through_the_agent_holds_after_the_agent_restarts(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    skf = fresh_skf_fixtures
    token_id = skf.token_id("sm2-default-pin")
    async with running_agent(fixtures, modules=(skf.library,)) as agent, connect(agent) as client:
        changed = await client.call("changePin", tokenId=token_id, oldPin="12345678", newPin="Qd2026sm2")
        assert changed.get("result") == {"changed": True}, changed
    async with running_agent(fixtures, modules=(skf.library,)) as agent, connect(agent) as client:
        assert (await _tokens(client))[token_id]["pinState"] == "ok"  # no longer the default
        assert "result" in await client.call("verifyPin", tokenId=token_id, pin="Qd2026sm2")
        old = await client.call("verifyPin", tokenId=token_id, pin="12345678")
    assert old["error"]["code"] == "PIN_INCORRECT"


async def test_a_device_pulled_out_and_put_back_is_removed_and_inserted_again(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    skf = fresh_skf_fixtures
    token_id = skf.token_id("sm2-agency")
    async with running_agent(fixtures, modules=(skf.library,)) as agent, connect(agent) as client:
        assert token_id in await _tokens(client)
        skf.store.pull_out("dev-sm2-agency")
        removed = await client.event("tokenRemoved", timeout=10)
        assert removed["data"]["tokenId"] == token_id
        skf.store.plug_in("dev-sm2-agency")
        inserted = await client.event("tokenInserted", timeout=10)
        assert inserted["data"]["tokenId"] == token_id


@pytest.mark.parametrize("cert_name", ["hairun-ec"])
async def test_pkcs11_and_skf_media_are_served_side_by_side(
    fixtures: Fixtures, skf_fixtures: SkfFixtures, cert_name: str
) -> None:
    modules = (fixtures.module, skf_fixtures.library)
    async with running_agent(fixtures, modules=modules) as agent, connect(agent) as client:
        tokens = await _tokens(client)
        assert {t["module"] for t in tokens.values()} == set(modules)
        reply = await client.call(
            "authenticate",
            tokenId=skf_fixtures.token_id("sm2-agency"),
            certId=skf_fixtures.cert("xinda-sm2").cert_id,
            pin=skf_fixtures.medium("sm2-agency").pin,
            challengeNonce=NONCE,
        )
        _check_sm2(skf_fixtures, "xinda-sm2", reply["result"]["authToken"])
        ecdsa = await client.call(
            "authenticate",
            tokenId=f"{fixtures.module}#{fixtures.token_of(cert_name).serial}",
            certId=fixtures.cert(cert_name).cert_id,
            pin=fixtures.token_of(cert_name).pin,
            challengeNonce=NONCE,
        )
    assert ecdsa["result"]["authToken"]["algorithm"] == "ES256"


async def test_cert_agent_serve_loads_the_skf_library_by_what_it_exports_and_the_user_spends_the_last_try(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures, tmp_path: Path
) -> None:
    """A real `cert-agent serve` given the SKF library with --module (no catalog word needed: its
    exports say SKF), the device counting to its lock: pages stop at the last try, the user's
    own `cert-agent verify-pin` spends it, and the device locks (its own count, never the agent's)."""
    skf = fresh_skf_fixtures
    port = free_port()
    library = tmp_path / "libtaxukey-vendor.so"  # a file name the media catalog does not know
    shutil.copyfile(skf.library, library)
    env = fixtures.env.environ() | skf.environ()
    (tmp_path / "agent.toml").write_text("pin_failures_per_connection = 50\npin_failures_per_origin = 50\n"
                                         "pin_failures_per_token = 50\n", encoding="utf-8")  # fmt: skip
    command = [sys.executable, "-m", "cert_agent", "serve", "--config", str(tmp_path / "agent.toml"), "--port",
               str(port), "--allow-origin", ALLOWED_ORIGIN, "--module", str(library)]  # fmt: skip
    daemon = Daemon(command, tmp_path / "agent.log", env=env)
    try:
        assert "listening" in daemon.line()
        token_id = f"{library}#{skf.medium('sm2-agency').serial}#SM2"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}/ws", origin=ALLOWED_ORIGIN) as ws,
        ):
            client = Client(ws)
            told = [(await client.call("verifyPin", tokenId=token_id, pin="000000"))["error"].get("triesLeft")
                    for _ in range(5)]  # fmt: skip
            assert told == [5, 4, 3, 2, 1]
            held = await client.call("verifyPin", tokenId=token_id, pin="000000")
            assert held["error"]["code"] == "PIN_TRIES_RESERVED"
            spent = subprocess.run(
                [sys.executable, "-m", "cert_agent", "verify-pin", "--label", "税务UKey 信达财税 SM2", "--pin-stdin"],
                input="000000\n", env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert spent.returncode == 1 and spent.stderr.strip().endswith("PIN_LOCKED"), spent.stderr
            locked = await client.call("verifyPin", tokenId=token_id, pin=skf.medium("sm2-agency").pin)
            assert locked["error"]["code"] in ("PIN_LOCKED", "PIN_TRIES_RESERVED")
    finally:
        log = daemon.stop()
    assert skf.store.pin_state("dev-sm2-agency", "SM2")["remain"] == "0"
    assert skf.medium("sm2-agency").pin not in log and "000000" not in log  # no PIN in the log
