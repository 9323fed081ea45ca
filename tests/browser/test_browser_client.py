"""cert-agent.js in headless Chromium (Debian's, driven by Playwright) against a real agent."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from cryptography.exceptions import InvalidSignature

from softhsm_fixtures import Fixtures
from tests.harness.agent import certificate_of, free_port, verify_auth_token
from tests.harness.browser import ARTIFACTS, call, page_with_agent

NONCE = base64.b64encode(os.urandom(32)).decode()


async def test_page_connects_lists_and_authenticates_for_its_own_origin(fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fixtures, "hairun-ec")
    async with page_with_agent(fixtures) as (page, agent, origin):
        result = await call(
            page,
            """
            const agent = await m.connect({ port: arg.port });
            const hello = await agent.hello();
            const { tokens } = await agent.listCertificates();
            const { authToken } = await agent.authenticate(arg.request);
            agent.close();
            return { hello, labels: tokens.map(t => t.label), authToken };
            """,
            {
                "port": agent.config.port,
                "request": {"tokenId": token_id, "certId": cert_id, "pin": "112233", "challengeNonce": NONCE},
            },
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "browser-client.png"))
    assert result["hello"]["origin"] == origin
    assert fixtures.token("ukey").label in result["labels"]
    verify_auth_token(result["authToken"], origin, NONCE)
    with pytest.raises(InvalidSignature):
        verify_auth_token(result["authToken"], "https://etax.example.com", NONCE)


async def test_wrong_pin_is_a_typed_error_with_tries_left(fresh_fixtures: Fixtures) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    async with page_with_agent(fresh_fixtures) as (page, agent, _origin):
        error = await call(
            page,
            "const agent = await m.connect({ port: arg.port }); return await agent.verifyPin(arg.request);",
            {"port": agent.config.port, "request": {"tokenId": token_id, "pin": "000000"}},
        )
    assert error["name"] == "CertAgentError" and error["code"] == "PIN_INCORRECT"
    assert error["details"]["triesLeft"] == 9 and "还可尝试 9 次" in error["message"]


async def test_agent_not_running_is_reported_with_install_advice(fixtures: Fixtures) -> None:
    async with page_with_agent(fixtures) as (page, _agent, _origin):
        error = await call(page, "return await m.connect({ port: arg });", free_port())
    assert error["code"] == "AGENT_NOT_RUNNING" and "启动证书助手" in error["message"]


async def test_connection_that_never_answers_times_out(fixtures: Fixtures) -> None:
    silent_port = free_port()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts the TCP connection, never answers the upgrade

    server = await asyncio.start_server(swallow, "127.0.0.1", silent_port)
    try:
        async with page_with_agent(fixtures) as (page, _agent, _origin):
            error = await call(page, "return await m.connect({ port: arg, timeoutMs: 800 });", silent_port)
    finally:
        server.close()
    assert error["code"] == "TIMEOUT"


async def test_page_of_an_origin_not_allowed_cannot_connect(fixtures: Fixtures) -> None:
    async with page_with_agent(fixtures, allowed_origins=("https://etax.example.com",)) as (page, agent, _origin):
        error = await call(page, "return await m.connect({ port: arg });", agent.config.port)
    assert error["code"] == "AGENT_NOT_RUNNING"  # a browser cannot see why a WebSocket was refused


async def test_token_events_reach_the_page(fresh_fixtures: Fixtures) -> None:
    serial = fresh_fixtures.token("golden-tax-disk").serial
    token_id, _ = certificate_of(fresh_fixtures, "lanhai-rsa")
    async with page_with_agent(fresh_fixtures) as (page, agent, _origin):
        await call(
            page,
            """
            window.events = [];
            const agent = await m.connect({ port: arg });
            agent.on("tokenRemoved", d => window.events.push(["removed", d.tokenId]));
            agent.on("tokenInserted", d => window.events.push(["inserted", d.tokenId]));
            window.agent = agent;
            """,
            agent.config.port,
        )
        fresh_fixtures.env.pull_out(serial)
        await page.wait_for_function("window.events.length >= 1", timeout=10000)
        fresh_fixtures.env.plug_in(serial)
        await page.wait_for_function("window.events.length >= 2", timeout=10000)
        events = await page.evaluate("window.events")
    assert events == [["removed", token_id], ["inserted", token_id]]
