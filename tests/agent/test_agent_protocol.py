"""The agent's WebSocket protocol with real clients: requests, errors, signatures, events."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from softhsm_fixtures import Fixtures
from tests.harness.agent import (
    ALLOWED_ORIGIN,
    NONCE,
    Client,
    RunningAgent,
    certificate_of,
    connect,
    running_agent,
    verify_auth_token,
)
from tests.harness.hang import media_that_can_hang

# --- basics -----------------------------------------------------------------------------------


async def test_hello_names_agent_version_protocol_and_the_handshake_origin(agent: RunningAgent) -> None:
    async with connect(agent) as client:
        reply = await client.call("hello", protocolVersions=[1])
    assert reply["result"]["agent"] == "cert-agent"
    assert reply["result"]["protocolVersion"] == 1
    assert reply["result"]["origin"] == ALLOWED_ORIGIN


async def test_hello_without_a_shared_protocol_version_is_an_error(agent: RunningAgent) -> None:
    async with connect(agent) as client:
        reply = await client.call("hello", protocolVersions=[7])
    assert reply["error"]["code"] == "UNSUPPORTED_PROTOCOL"


async def test_list_certificates_gives_tokens_media_pin_states_and_parsed_certificates(
    agent: RunningAgent, fixtures: Fixtures
) -> None:
    async with connect(agent) as client:
        reply = await client.call("listCertificates")
    tokens = {t["label"]: t for t in reply["result"]["tokens"]}
    assert set(tokens) == {t.label for t in fixtures.tokens}
    golden = tokens[fixtures.token("golden-tax-disk").label]
    assert golden["medium"] == "金税盘" and golden["pinState"] == "ok"
    (cert,) = golden["certificates"]
    assert cert["info"]["taxpayerId"] == fixtures.cert("lanhai-rsa").taxpayer_id
    assert x509.load_der_x509_certificate(base64.b64decode(cert["certificate"]))
    assert tokens[fixtures.token("locked").label]["pinState"] == "locked"


# --- malformed input --------------------------------------------------------------------------

MALFORMED = [
    pytest.param("not json", None, "BAD_JSON", id="not JSON"),
    pytest.param("[1, 2]", None, "BAD_JSON", id="array"),
    pytest.param('{"method": "hello"}', None, "BAD_REQUEST", id="no id"),
    pytest.param('{"id": true, "method": "hello"}', None, "BAD_REQUEST", id="boolean id"),
    pytest.param('{"id": 5}', 5, "BAD_REQUEST", id="no method"),
    pytest.param('{"id": 6, "method": "rm -rf"}', 6, "UNKNOWN_METHOD", id="unknown method"),
    pytest.param('{"id": 7, "method": "hello", "params": []}', 7, "BAD_REQUEST", id="params not an object"),
    pytest.param('{"id": "a", "method": "authenticate", "params": {}}', "a", "BAD_REQUEST", id="missing fields"),
    pytest.param("[" * 30000 + "]" * 30000, None, "BAD_JSON", id="deep nesting"),
]


@pytest.mark.parametrize(("frame", "reply_id", "code"), MALFORMED)
async def test_malformed_request_gets_an_error_code_and_the_connection_lives_on(
    agent: RunningAgent, frame: str, reply_id: Any, code: str
) -> None:
    async with connect(agent) as client:
        await client.ws.send_str(frame)
        reply = await client.reply(reply_id)
        assert reply["error"]["code"] == code
        assert (await client.call("hello"))["result"]["agent"] == "cert-agent"


async def test_binary_frame_is_refused_and_the_connection_lives_on(agent: RunningAgent) -> None:
    async with connect(agent) as client:
        await client.ws.send_bytes(b"\x00\x01")
        assert (await client.reply(None))["error"]["code"] == "BAD_JSON"
        assert "result" in await client.call("hello")


async def test_oversized_frame_closes_with_1009_and_the_daemon_lives_on(agent: RunningAgent) -> None:
    async with connect(agent) as client:
        await client.ws.send_str("x" * (agent.config.max_message_bytes + 1))
        message = await client.ws.receive()
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert client.ws.close_code == 1009
    async with connect(agent) as client:
        assert "result" in await client.call("hello")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"certId": "00", "pin": "1", "challengeNonce": NONCE}, "tokenId"),
        ({"tokenId": "t", "certId": "XYZ", "pin": "1", "challengeNonce": NONCE}, "certId"),
        ({"tokenId": "t", "certId": "00", "pin": "1", "challengeNonce": "short"}, "challengeNonce"),
        ({"tokenId": "t", "certId": "00", "pin": 112233, "challengeNonce": NONCE}, "pin"),
        ({"tokenId": "t", "certId": "00", "pin": "1", "challengeNonce": NONCE, "algorithm": "HS256"}, "algorithm"),
    ],
)
async def test_authenticate_with_a_bad_field_names_the_field(
    agent: RunningAgent, params: dict[str, Any], field: str
) -> None:
    async with connect(agent) as client:
        reply = await client.call("authenticate", **params)
    assert reply["error"]["code"] == "BAD_REQUEST" and reply["error"]["field"] == field


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert_name", "algorithm"), [("hairun-ec", "ES256"), ("lanhai-rsa", "RS256"), ("p384", "ES384")]
)
async def test_authenticate_returns_a_web_eid_token_bound_to_the_handshake_origin(
    agent: RunningAgent, fixtures: Fixtures, cert_name: str, algorithm: str
) -> None:
    token_id, cert_id = certificate_of(fixtures, cert_name)
    pin = fixtures.token_of(cert_name).pin
    async with connect(agent) as client:
        reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin=pin, challengeNonce=NONCE)
    auth = reply["result"]["authToken"]
    assert auth["format"] == "web-eid:1.0" and auth["algorithm"] == algorithm and auth["appVersion"]
    der = fixtures.certificate(cert_name).public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(auth["unverifiedCertificate"]) == der
    verify_auth_token(auth, ALLOWED_ORIGIN, NONCE)
    for other in ("https://evil.test", "https://etax.example.com:8443", "http://etax.example.com"):
        with pytest.raises(InvalidSignature):
            verify_auth_token(auth, other, NONCE)
    with pytest.raises(InvalidSignature):
        verify_auth_token(auth, ALLOWED_ORIGIN, NONCE[:-2] + "AA")


async def test_authenticate_with_a_requested_pss_algorithm(agent: RunningAgent, fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fixtures, "lanhai-rsa")
    async with connect(agent) as client:
        reply = await client.call(
            "authenticate", tokenId=token_id, certId=cert_id, pin="556677", challengeNonce=NONCE, algorithm="PS256"
        )
    verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, NONCE)


async def test_wrong_pin_reports_the_tries_left(fresh_agent: RunningAgent, fresh_fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fresh_fixtures, "hairun-ec")
    async with connect(fresh_agent) as client:
        first = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin="000000", challengeNonce=NONCE)
        second = await client.call("verifyPin", tokenId=token_id, pin="000001")
    assert first["error"]["code"] == "PIN_INCORRECT" and first["error"]["triesLeft"] == 9
    assert second["error"]["triesLeft"] == 8 and "还可尝试 8 次" in second["error"]["message"]


async def test_locked_token_is_reported_as_locked(agent: RunningAgent, fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fixtures, "locked-ec")
    async with connect(agent) as client:
        reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin="343434", challengeNonce=NONCE)
    assert reply["error"]["code"] == "PIN_LOCKED"


async def test_unknown_token_and_certificate_are_errors(agent: RunningAgent, fixtures: Fixtures) -> None:
    token_id, _ = certificate_of(fixtures, "hairun-ec")
    async with connect(agent) as client:
        no_token = await client.call("verifyPin", tokenId="nope", pin="1")
        no_cert = await client.call("authenticate", tokenId=token_id, certId="ab", pin="112233", challengeNonce=NONCE)
        unparsable_id, unparsable_cert = certificate_of(fixtures, "unparsable")
        broken = await client.call(
            "authenticate", tokenId=unparsable_id, certId=unparsable_cert, pin="135790", challengeNonce=NONCE
        )
    assert no_token["error"]["code"] == "TOKEN_NOT_FOUND"
    assert no_cert["error"]["code"] == "CERTIFICATE_NOT_FOUND"
    assert broken["error"]["code"] == "CERTIFICATE_UNPARSABLE"


async def test_wrong_pins_are_rate_limited_per_connection_before_the_token_is_asked(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    async with connect(fresh_agent) as client:
        codes = [(await client.call("verifyPin", tokenId=token_id, pin="000000"))["error"]["code"] for _ in range(5)]
        limited = await client.call("verifyPin", tokenId=token_id, pin="112233")  # even the right PIN waits
    assert codes == ["PIN_INCORRECT"] * 5
    assert limited["error"]["code"] == "RATE_LIMITED" and 0 < limited["error"]["retryAfter"] <= 60
    async with connect(fresh_agent) as other_tab:  # another connection has its own window
        reply = await other_tab.call("verifyPin", tokenId=token_id, pin="112233")
    assert reply["result"] == {"verified": True}


async def test_wrong_pins_are_rate_limited_per_origin_across_connections(fresh_fixtures: Fixtures) -> None:
    async with running_agent(fresh_fixtures, pin_max_tries=100) as agent:  # a medium that locks late
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
        for _ in range(2):
            async with connect(agent) as client:
                for _ in range(5):
                    await client.call("verifyPin", tokenId=token_id, pin="000000")
        async with connect(agent) as client:
            reply = await client.call("verifyPin", tokenId=token_id, pin="112233")
    assert reply["error"]["code"] == "RATE_LIMITED"


async def test_change_pin_then_the_new_pin_authenticates(fresh_agent: RunningAgent, fresh_fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fresh_fixtures, "chuxin-ec")
    async with connect(fresh_agent) as client:
        refused = await client.call("changePin", tokenId=token_id, oldPin="88888888", newPin="88888888")
        changed = await client.call("changePin", tokenId=token_id, oldPin="88888888", newPin="Qd2026tax")
        old = await client.call("verifyPin", tokenId=token_id, pin="88888888")
        new = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin="Qd2026tax", challengeNonce=NONCE)
    assert refused["error"]["code"] == "PIN_POLICY" and refused["error"]["rule"] == "same_as_old"
    assert changed["result"] == {"changed": True}
    assert old["error"]["code"] == "PIN_INCORRECT"
    verify_auth_token(new["result"]["authToken"], ALLOWED_ORIGIN, NONCE)


# --- concurrency, isolation, events ---------------------------------------------------------


async def test_concurrent_tabs_authenticate_on_several_tokens_at_once(agent: RunningAgent, fixtures: Fixtures) -> None:
    names = ["hairun-ec", "xinda-ec", "lanhai-rsa", "shuangzheng-ec", "hengxin-ec"]

    async def tab(cert_name: str) -> None:
        token_id, cert_id = certificate_of(fixtures, cert_name)
        pin = fixtures.token_of(cert_name).pin
        async with connect(agent) as client:
            for _ in range(3):
                nonce = base64.b64encode(os.urandom(32)).decode()
                reply = await client.call(
                    "authenticate", tokenId=token_id, certId=cert_id, pin=pin, challengeNonce=nonce
                )
                verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, nonce)

    await asyncio.gather(*(tab(name) for name in names * 2))


async def test_several_requests_on_one_connection_are_answered_by_id(agent: RunningAgent, fixtures: Fixtures) -> None:
    token_a, cert_a = certificate_of(fixtures, "hairun-ec")
    token_b, cert_b = certificate_of(fixtures, "xinda-ec")
    async with connect(agent) as client:
        await client.ws.send_json(
            {
                "id": "a",
                "method": "authenticate",
                "params": {"tokenId": token_a, "certId": cert_a, "pin": "112233", "challengeNonce": NONCE},
            }
        )
        await client.ws.send_json(
            {
                "id": "b",
                "method": "authenticate",
                "params": {"tokenId": token_b, "certId": cert_b, "pin": "998877", "challengeNonce": NONCE},
            }
        )
        await client.ws.send_json({"id": "c", "method": "hello"})
        replies = {rid: await client.reply(rid) for rid in ("c", "b", "a")}
    assert all("result" in reply for reply in replies.values())


async def test_a_stalled_token_blocks_neither_other_tokens_of_its_module_nor_the_daemon(
    fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slow_id, slow_cert = certificate_of(fixtures, "hairun-ec")
    fast_id, fast_cert = certificate_of(fixtures, "xinda-ec")  # same module, same worker process
    with media_that_can_hang(monkeypatch, tmp_path) as media:  # a double: see tests/hang
        async with running_agent(fixtures, operation_timeout=3.0) as agent, connect(agent) as client:
            with media.hung(fixtures.token_of("hairun-ec").serial):
                await client.ws.send_json(
                    {
                        "id": "slow",
                        "method": "authenticate",
                        "params": {"tokenId": slow_id, "certId": slow_cert, "pin": "112233", "challengeNonce": NONCE},
                    }
                )
                fast = await client.call(
                    "authenticate", tokenId=fast_id, certId=fast_cert, pin="998877", challengeNonce=NONCE
                )
                assert "result" in fast, fast
                verify_auth_token(fast["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
                assert "result" in await client.call("listCertificates")
                slow = await client.reply("slow", timeout=10)
                assert slow["error"]["code"] == "TOKEN_TIMEOUT"
            # the medium answers again: the hung call ends, and the token serves the next one
            again = await client.call(
                "authenticate", tokenId=slow_id, certId=slow_cert, pin="112233", challengeNonce=NONCE
            )
            verify_auth_token(again["result"]["authToken"], ALLOWED_ORIGIN, NONCE)


async def test_a_pin_that_waited_out_its_time_behind_a_hung_call_never_reaches_the_token(
    fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_id, _ = certificate_of(fixtures, "hairun-ec")
    serial = fixtures.token_of("hairun-ec").serial
    with media_that_can_hang(monkeypatch, tmp_path) as media:  # a double: see tests/hang
        async with running_agent(fixtures, operation_timeout=1.5) as agent, connect(agent) as client:
            with media.hung(serial):
                for n, pin in enumerate(("112233", "000000")):  # the second one waits behind the first
                    await client.ws.send_json(
                        {"id": n, "method": "verifyPin", "params": {"tokenId": token_id, "pin": pin}}
                    )
                replies = [await client.reply(n, timeout=10) for n in range(2)]
                await asyncio.sleep(0.3)  # well past the second one's time
            await asyncio.sleep(0.5)  # the hung call ends; the wrong PIN behind it is dropped
            assert media.logins(serial) == 1  # only the call that was under way
            after = await client.call("verifyPin", tokenId=token_id, pin="112233")
    assert [r["error"]["code"] for r in replies] == ["TOKEN_TIMEOUT", "TOKEN_TIMEOUT"]
    assert after["result"] == {"verified": True}


async def test_token_pulled_out_and_plugged_in_are_pushed_as_events(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token = fresh_fixtures.token("golden-tax-disk")
    token_id, cert_id = certificate_of(fresh_fixtures, "lanhai-rsa")
    async with connect(fresh_agent) as client:
        await client.call("hello")
        fresh_fixtures.env.pull_out(token.serial)
        removed = await client.event("tokenRemoved")
        assert removed["data"]["tokenId"] == token_id
        gone = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin=token.pin, challengeNonce=NONCE)
        assert gone["error"]["code"] in ("TOKEN_NOT_FOUND", "TOKEN_NOT_PRESENT")
        fresh_fixtures.env.plug_in(token.serial)
        inserted = await client.event("tokenInserted")
        assert inserted["data"]["tokenId"] == token_id and inserted["data"]["certificates"]
        back = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin=token.pin, challengeNonce=NONCE)
        verify_auth_token(back["result"]["authToken"], ALLOWED_ORIGIN, NONCE)


async def test_no_pin_reaches_the_logs_or_replies(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_id, cert_id = certificate_of(fresh_fixtures, "chuxin-ec")
    replies = []
    async with connect(fresh_agent) as client:
        replies.append(await client.call("verifyPin", tokenId=token_id, pin="Wr0ng7788"))
        replies.append(
            await client.call("authenticate", tokenId=token_id, certId=cert_id, pin="Wr0ng7789", challengeNonce=NONCE)
        )
        replies.append(await client.call("changePin", tokenId=token_id, oldPin="88888888", newPin="Sh0rt"))
        replies.append(await client.call("changePin", tokenId=token_id, oldPin="88888888", newPin="N3wSecret26"))
        replies.append(
            await client.call("authenticate", tokenId=token_id, certId=cert_id, pin="N3wSecret26", challengeNonce=NONCE)
        )
    text = caplog.text + repr(replies)
    assert "PIN_INCORRECT" in text
    for secret in ("Wr0ng7788", "Wr0ng7789", "Sh0rt", "N3wSecret26", "88888888"):
        assert secret not in text


async def test_a_module_that_does_not_load_is_reported_and_the_others_serve(fixtures: Fixtures) -> None:
    modules = (fixtures.module, "/nonexistent/libvendor-ukey.so")
    async with running_agent(fixtures, modules=modules) as agent, connect(agent) as client:
        reply = await client.call("listCertificates")
    assert len(reply["result"]["tokens"]) == len(fixtures.tokens)
    (problem,) = reply["result"]["problems"]
    assert problem["module"] == "/nonexistent/libvendor-ukey.so"
    assert problem["error"]["code"] == "MODULE_LOAD_FAILED"


async def test_the_last_try_of_the_known_limit_is_shown_and_held_back_from_pages(fresh_fixtures: Fixtures) -> None:
    # The medium's retry limit is configured (3); SoftHSM2 itself never locks. Two wrong PINs
    # leave one try: the token shows final_try (its PIN field stays), and a page's third PIN,
    # even the right one, is not presented: the last try is the user's own (cert-agent verify-pin).
    async with running_agent(fresh_fixtures, pin_max_tries=3) as agent, connect(agent) as client:
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
        before = await client.call("listCertificates")  # the answer kept as text until a token changes
        assert {t["tokenId"]: t["pinState"] for t in before["result"]["tokens"]}[token_id] != "final_try"
        replies = [await client.call("verifyPin", tokenId=token_id, pin="000000") for _ in range(2)]
        assert [r["error"].get("triesLeft") for r in replies] == [2, 1]
        final = await _pin_state_event(client, "final_try")
        assert final["data"]["tokenId"] == token_id
        listed = await client.call("listCertificates")
        assert {t["tokenId"]: t["pinState"] for t in listed["result"]["tokens"]}[token_id] == "final_try"
        held = await client.call("verifyPin", tokenId=token_id, pin="112233")
        assert held["error"]["code"] == "PIN_TRIES_RESERVED" and held["error"]["triesLeft"] == 1


async def _pin_state_event(client: Client, state: str) -> dict[str, Any]:
    while True:
        event = await client.event("tokenChanged")
        if event["data"]["pinState"] == state:
            return event


async def test_listing_when_nothing_changed_asks_no_library_and_a_pin_operation_is_listed_at_once(
    fresh_fixtures: Fixtures,
) -> None:
    # The poller keeps the tokens fresh (every poll_interval) and pages hear of changes as events,
    # so a listing within the interval answers from the last scan; a PIN operation asks for a
    # scan, and the next listing waits for it.
    async with running_agent(fresh_fixtures, poll_interval=30.0) as agent, connect(agent) as client:
        scans = 0
        scan = agent.service._workers.scan

        async def counted(*args: Any) -> Any:
            nonlocal scans
            scans += 1
            return await scan(*args)

        agent.service._workers.scan = counted  # type: ignore[method-assign,assignment]
        for _ in range(5):
            assert "result" in await client.call("listCertificates")
        assert scans == 0
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
        wrong = await client.call("verifyPin", tokenId=token_id, pin="000000")
        assert wrong["error"]["code"] == "PIN_INCORRECT"
        assert "result" in await client.call("listCertificates")
        assert scans >= 1  # the PIN operation's scan, waited for (or made) by the listing
        await asyncio.sleep(0.5)  # the poller's own answer to the request, if it made one
        settled = scans
        for _ in range(5):
            assert "result" in await client.call("listCertificates")
        assert scans == settled
