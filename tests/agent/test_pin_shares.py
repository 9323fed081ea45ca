"""One site cannot lock another out of a medium, nor spend its last try (issue 17, item 3)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.agent import certificate_of, connect, free_port, running_agent

SITE_A = "https://etax.example.com"
SITE_B = "https://etax.other.example"


async def test_origin_b_right_pin_is_never_refused_while_origin_a_sends_wrong_pins(fresh_fixtures: Fixtures) -> None:
    """The attack of issue 17: A sends wrong PINs at 2/s from 3 connections; B's right PIN,
    every two seconds, must always be tried and accepted, and the medium must never be locked."""
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    async with running_agent(fresh_fixtures, allowed_origins=(SITE_A, SITE_B)) as agent:
        a_codes: Counter[str] = Counter()
        b_codes: list[str] = []
        stop = time.monotonic() + 12

        async def attacker(number: int) -> None:
            async with connect(agent, SITE_A) as client:
                while time.monotonic() < stop:
                    reply = await client.call("verifyPin", tokenId=token_id, pin=f"00000{number}")
                    a_codes[reply["error"]["code"]] += 1
                    await asyncio.sleep(1.5)  # three connections: 2 per second

        async def taxpayer() -> None:
            async with connect(agent, SITE_B) as client:
                while time.monotonic() < stop:
                    await asyncio.sleep(2)
                    reply = await client.call("verifyPin", tokenId=token_id, pin="112233")
                    b_codes.append("OK" if "result" in reply else reply["error"]["code"])

        await asyncio.gather(*(attacker(n) for n in range(3)), taxpayer())
        wrong_in_a_row = agent.service.wrong_in_a_row(token_id)
    assert b_codes and set(b_codes) == {"OK"}, b_codes
    assert a_codes["PIN_INCORRECT"] > 0
    assert set(a_codes) <= {"PIN_INCORRECT", "PIN_TRIES_RESERVED", "RATE_LIMITED"}
    assert wrong_in_a_row <= 8  # the medium (10 tries) always kept two


def _serve(fixtures: Fixtures, port: int, config: Path) -> subprocess.Popen[str]:
    config.write_text(f'pin_max_tries = 4\nallowed_origins = ["{SITE_A}"]\n', encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "cert_agent", "serve", "--config", str(config), "--port", str(port)],
        env=fixtures.env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _verify_pin(fixtures: Fixtures, label: str, pin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cert_agent", "verify-pin", "--token", label, "--pin-stdin"],
        input=pin + "\n",
        env=fixtures.env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_users_own_verify_pin_spends_the_held_last_try_through_the_running_agent(
    fresh_fixtures: Fixtures, tmp_path: Path
) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    label = fresh_fixtures.token_of("hairun-ec").label
    port = free_port()
    process = _serve(fresh_fixtures, port, tmp_path / "config.toml")
    try:
        assert process.stdout is not None and "listening" in process.stdout.readline()
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=SITE_A) as ws:

            async def call(request_id: int, pin: str) -> dict[str, object]:
                await ws.send_json(
                    {"id": request_id, "method": "verifyPin", "params": {"tokenId": token_id, "pin": pin}}
                )
                while True:
                    message = await ws.receive_json(timeout=30)
                    if message.get("id") == request_id:
                        return dict(message["error"]) if "error" in message else {"code": "OK"}

            codes = [(await call(n, "000000"))["code"] for n in range(3)]
            held = await call(3, "112233")  # one try left of four: a page may not spend it
            wrong = await asyncio.to_thread(_verify_pin, fresh_fixtures, "no such token", "999999")
            right = await asyncio.to_thread(_verify_pin, fresh_fixtures, label, "112233")
            async with session.ws_connect(url, origin=SITE_A) as again:
                await again.send_json(
                    {"id": 1, "method": "verifyPin", "params": {"tokenId": token_id, "pin": "112233"}}
                )
                page_after = await again.receive_json(timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert codes == ["PIN_INCORRECT"] * 3
    assert held["code"] == "PIN_TRIES_RESERVED" and held["triesLeft"] == 1
    assert wrong.returncode == 1 and wrong.stderr.splitlines()[-1] == "TOKEN_NOT_FOUND"
    assert right.returncode == 0, right.stderr
    assert "证书密码正确" in right.stdout
    assert page_after.get("result") == {"verified": True}  # a right PIN ended the counts
    for pin in ("999999", "112233"):
        assert pin not in stderr + wrong.stderr + right.stderr + right.stdout
