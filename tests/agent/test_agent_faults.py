"""Faults injected into a running agent: token workers killed or stopped in the middle of an
operation, token stores pulled out or corrupted while in use. Every fault costs the requests
that met it (each with a documented code), never the daemon, the connection or another token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal

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
from tests.harness.fuzz import CASES, documented_codes

CODES = documented_codes()


async def _worker_pid(agent: RunningAgent, client: Client, token_id: str, pin: str) -> int:
    assert "result" in await client.call("verifyPin", tokenId=token_id, pin=pin)  # the worker is up
    (pid,) = agent.service.worker_pids()[token_id]
    return pid


async def _send(client: Client, request_id: str, method: str, **params: str) -> None:
    await client.ws.send_json({"id": request_id, "method": method, "params": params})


async def _still_serving(agent: RunningAgent, client: Client, fixtures: Fixtures, cert_name: str) -> None:
    token_id, cert_id = certificate_of(fixtures, cert_name)
    nonce = base64.b64encode(os.urandom(32)).decode()
    pin = fixtures.token_of(cert_name).pin
    reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin=pin, challengeNonce=nonce)
    assert "result" in reply, reply
    verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, nonce)


async def test_worker_killed_during_authenticate_costs_that_request_only(
    agent: RunningAgent, fixtures: Fixtures
) -> None:
    token_id, cert_id = certificate_of(fixtures, "hairun-ec")
    async with connect(agent) as client:
        pid = await _worker_pid(agent, client, token_id, "112233")
        os.kill(pid, signal.SIGSTOP)  # hold it inside the operation, then kill it there
        await _send(
            client, "doomed", "authenticate", tokenId=token_id, certId=cert_id, pin="112233", challengeNonce=NONCE
        )
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        doomed = await client.reply("doomed")
        CASES["faults"] += 1
        assert doomed["error"]["code"] == "WORKER_FAILED"
        await _still_serving(agent, client, fixtures, "hairun-ec")  # a new worker serves the token
        await _still_serving(agent, client, fixtures, "xinda-ec")


async def test_a_module_worker_killed_under_several_calls_costs_those_calls_and_then_serves_again(
    agent: RunningAgent, fixtures: Fixtures
) -> None:
    names = ["hairun-ec", "xinda-ec", "hengxin-ec", "shuangzheng-ec"]  # four tokens of one module
    async with connect(agent) as client:
        pid = await _worker_pid(agent, client, certificate_of(fixtures, names[0])[0], "112233")
        os.kill(pid, signal.SIGSTOP)  # all four calls reach the worker, then it dies under them
        for name in names:
            token_id, cert_id = certificate_of(fixtures, name)
            pin = fixtures.token_of(name).pin
            await _send(client, name, "authenticate", tokenId=token_id, certId=cert_id, pin=pin, challengeNonce=NONCE)
        await asyncio.sleep(0.6)
        os.kill(pid, signal.SIGKILL)
        doomed = [await client.reply(name) for name in names]
        CASES["faults"] += 1
        assert {reply["error"]["code"] for reply in doomed} == {"WORKER_FAILED"}
        for name in names:  # one new worker serves them all
            await _still_serving(agent, client, fixtures, name)
    assert len({pids[0] for key, pids in agent.service.worker_pids().items()}) == 1


async def test_worker_killed_during_change_pin_leaves_one_working_pin(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "chuxin-ec")
    async with connect(fresh_agent) as client:
        pid = await _worker_pid(fresh_agent, client, token_id, "88888888")
        await _send(client, "change", "changePin", tokenId=token_id, oldPin="88888888", newPin="Qd2026tax")
        await asyncio.sleep(0.005)  # somewhere inside C_Login / C_SetPIN / the store rewrite
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        change = await client.reply("change")
        CASES["faults"] += 1
        assert change.get("result") == {"changed": True} or change["error"]["code"] == "WORKER_FAILED"
        old = await client.call("verifyPin", tokenId=token_id, pin="88888888")
        new = await client.call("verifyPin", tokenId=token_id, pin="Qd2026tax")
        await _still_serving(fresh_agent, client, fresh_fixtures, "hairun-ec")
    if {old.get("error", {}).get("code"), new.get("error", {}).get("code")} & {"TOKEN_NOT_FOUND", "TOKEN_NOT_PRESENT"}:
        # SoftHSM2 rewrites its token file in place, so a process killed in the middle of C_SetPIN
        # can tear it and the token is gone (a hardware medium commits the change on the card).
        # The agent reports it as not present and serves the other tokens. The agent itself never
        # kills a worker in the middle of a write (see the timeout test below).
        return
    assert ("result" in old) != ("result" in new), (old, new)  # otherwise exactly one PIN works


async def test_a_change_pin_that_times_out_is_left_to_finish_and_the_token_survives(
    fresh_fixtures: Fixtures,
) -> None:
    async with running_agent(fresh_fixtures, operation_timeout=2.0) as agent, connect(agent) as client:
        token_id, _ = certificate_of(fresh_fixtures, "chuxin-ec")
        pid = await _worker_pid(agent, client, token_id, "88888888")
        os.kill(pid, signal.SIGSTOP)  # a medium that stalls in the middle of a PIN change
        try:
            reply = await client.call("changePin", tokenId=token_id, oldPin="88888888", newPin="Qd2026tax")
            assert agent.service.worker_pids()[token_id] == [pid]  # not killed mid-write
        finally:
            os.kill(pid, signal.SIGCONT)  # the medium answers after all
        CASES["faults"] += 1
        assert reply["error"]["code"] == "TOKEN_TIMEOUT"
        new = await client.call("verifyPin", tokenId=token_id, pin="Qd2026tax")
        assert new["result"] == {"verified": True}  # the change completed; the token is intact


async def test_token_store_pulled_out_during_authentications_gives_documented_errors(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token = fresh_fixtures.token_of("lanhai-rsa")
    token_id, cert_id = certificate_of(fresh_fixtures, "lanhai-rsa")
    async with connect(fresh_agent) as client:
        await client.call("verifyPin", tokenId=token_id, pin=token.pin)
        for n in range(5):  # five authentications queued at the token when it goes
            await _send(
                client, f"a{n}", "authenticate", tokenId=token_id, certId=cert_id, pin=token.pin, challengeNonce=NONCE
            )
        fresh_fixtures.env.pull_out(token.serial)
        replies = [await client.reply(f"a{n}") for n in range(5)]
        CASES["faults"] += 1
        codes = {r["error"]["code"] for r in replies if "error" in r}
        assert codes <= {"DEVICE_REMOVED", "TOKEN_NOT_PRESENT", "TOKEN_NOT_FOUND"}, codes
        await _still_serving(fresh_agent, client, fresh_fixtures, "hairun-ec")


async def test_corrupted_token_store_is_refused_cleanly_and_the_other_tokens_serve(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token = fresh_fixtures.token_of("lanhai-rsa")
    token_id, cert_id = certificate_of(fresh_fixtures, "lanhai-rsa")
    async with connect(fresh_agent) as client:
        await client.call("verifyPin", tokenId=token_id, pin=token.pin)
        store = fresh_fixtures.env.token_object_file(token.label)
        store.write_bytes(os.urandom(store.stat().st_size))  # the medium's storage goes bad
        reply = await client.call("authenticate", tokenId=token_id, certId=cert_id, pin=token.pin, challengeNonce=NONCE)
        CASES["faults"] += 1
        if "error" in reply:
            assert reply["error"]["code"] in CODES and reply["error"]["code"] != "INTERNAL_ERROR", reply
        listed = await client.call("listCertificates")
        assert "result" in listed
        await _still_serving(fresh_agent, client, fresh_fixtures, "hairun-ec")
