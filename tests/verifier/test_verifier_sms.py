"""The SMS gateway sender against a small local HTTP gateway (a real aiohttp server): the message
arrives with the operator's token, failures are retried, a gateway that stays down is a clean
503 SMS_UNAVAILABLE, and the code never reaches the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from cert_agent.verifier.errors import SmsUnavailable
from cert_agent.verifier.factors.sms_senders import HttpGatewaySender
from tests.harness.agent import free_port


@dataclass
class Gateway:
    url: str
    failures_left: int = 0
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


@asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[Gateway]:
    port = free_port()
    state = Gateway(f"http://127.0.0.1:{port}/send", **settings)

    async def send(request: web.Request) -> web.Response:
        state.tokens.append(request.headers.get("Authorization", ""))
        await asyncio.sleep(state.delay)
        if state.failures_left:
            state.failures_left -= 1
            return web.json_response({"error": "busy"}, status=503)
        state.received.append(await request.json())
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/send", send)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_a_message_reaches_the_gateway_with_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETAX_SMS_TOKEN", "s3cret-token")
    async with gateway() as gw:
        await HttpGatewaySender(gw.url, token_env="ETAX_SMS_TOKEN").send("13800000001", "验证码 123456", "123456")
    assert gw.received == [{"phone": "13800000001", "text": "验证码 123456"}]
    assert gw.tokens == ["Bearer s3cret-token"]


async def test_a_busy_gateway_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway(failures_left=2) as gw:
        await HttpGatewaySender(gw.url, retries=2).send("13800000001", "验证码 654321", "654321")
    assert len(gw.received) == 1 and len(gw.tokens) == 3
    assert "654321" not in caplog.text and "attempt 1 failed: HTTP 503" in caplog.text


async def test_a_gateway_that_stays_down_or_hangs_is_sms_unavailable() -> None:
    async with gateway(failures_left=10) as gw:
        with pytest.raises(SmsUnavailable) as down:
            await HttpGatewaySender(gw.url, retries=1).send("13800000001", "x", "000000")
    assert down.value.http_status == 503 and down.value.code == "SMS_UNAVAILABLE"
    async with gateway(delay=2.0) as gw:
        with pytest.raises(SmsUnavailable):
            await HttpGatewaySender(gw.url, timeout=0.3, retries=0).send("13800000001", "x", "000000")
    with pytest.raises(SmsUnavailable):  # nothing listens there
        await HttpGatewaySender(f"http://127.0.0.1:{free_port()}/send", retries=0).send("1", "x", "000000")
