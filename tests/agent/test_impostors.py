"""A program of another user acting as the agent on a port the page tries (issue 17): the page
notices, and the impostor gets no PIN. Real processes: the agent, an impostor run as ``nobody``
that relays to the real agent when it can, and Debian's Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from softhsm_fixtures import Fixtures
from tests.harness.agent import NONCE, certificate_of, free_port
from tests.harness.browser import ARTIFACTS, call, page_with_agent
from tests.harness.otheruser import can_switch_user, impostor_of_another_user
from tests.harness.pages import site

pytestmark = pytest.mark.skipif(not can_switch_user(), reason="needs root on Linux to run a process as another user")

SIGN = """
    const agent = await m.connect({ ports: arg.ports, timeoutMs: 3000 });
    const { authToken } = await agent.authenticate(arg.request);
    agent.close();
    return { port: agent.impostorPorts, authToken };
"""


def _frames(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(r["data"]) for r in received if r["kind"] == "frame"]


async def test_a_paired_page_skips_an_impostor_on_an_earlier_port_and_sends_it_no_pin(fixtures: Fixtures) -> None:
    token_id, cert_id = certificate_of(fixtures, "hairun-ec")
    squatted = free_port()
    request = {"tokenId": token_id, "certId": cert_id, "pin": "112233", "challengeNonce": NONCE}
    async with page_with_agent(fixtures, listen_hosts=("127.0.0.1", "::1")) as (page, agent, _origin):
        ports = [squatted, agent.config.port]
        first = await call(page, "const a = await m.connect({ port: arg }); a.close(); return 'paired';", ports[1])
        assert first == "paired"
        with impostor_of_another_user(squatted, ("::1", agent.config.port)) as received:
            result = await call(page, SIGN, {"ports": ports, "request": request})
    assert "authToken" in result, result
    assert result["port"] == [squatted]  # the page knows an impostor answered first
    assert {"kind": "relay", "data": "refused 403"} in received  # the uid check stops the relay
    frames = _frames(received)
    assert [f["method"] for f in frames] == ["hello"]  # a challenge, then nothing
    assert "112233" not in json.dumps(received)


async def test_a_paired_page_refuses_an_impostor_when_the_agent_is_not_running(fixtures: Fixtures) -> None:
    squatted = free_port()
    async with page_with_agent(fixtures) as (page, agent, _origin):
        await call(page, "const a = await m.connect({ port: arg }); a.close();", agent.config.port)
        with impostor_of_another_user(squatted, ("127.0.0.1", free_port())) as received:
            error = await call(
                page,
                "return await m.connect({ ports: arg, timeoutMs: 3000 });",
                [squatted, free_port()],
            )
    assert error["code"] == "AGENT_IMPOSTOR"
    assert "冒充证书助手" in error["message"] and "不要在本页输入证书密码" in error["message"]
    assert [f["method"] for f in _frames(received)] == ["hello"]


async def test_an_unpaired_page_that_meets_two_agents_pairs_with_neither(fixtures: Fixtures) -> None:
    squatted = free_port()
    async with page_with_agent(fixtures) as (page, agent, _origin):
        with impostor_of_another_user(squatted, ("127.0.0.1", agent.config.port)) as received:
            error = await call(
                page, "return await m.connect({ ports: arg, timeoutMs: 3000 });", [squatted, agent.config.port]
            )
            stored = await page.evaluate("localStorage.getItem('cert-agent.pairingKey')")
        ARTIFACTS.mkdir(exist_ok=True)
    assert error["code"] == "AGENT_IMPOSTOR"
    assert stored is None
    assert [f["method"] for f in _frames(received)] == ["hello"]


async def test_after_forgetting_its_pairing_a_page_pairs_again_with_the_one_agent(fixtures: Fixtures) -> None:
    async with page_with_agent(fixtures) as (page, agent, _origin):
        await page.evaluate("localStorage.setItem('cert-agent.pairingKey', btoa('a key of an older agent.........'))")
        refused = await call(page, "return await m.connect({ port: arg });", agent.config.port)
        again = await call(
            page,
            "m.forgetPairing(); const a = await m.connect({ port: arg }); a.close(); return 'ok';",
            agent.config.port,
        )
    assert refused["code"] == "AGENT_IMPOSTOR"  # the real agent cannot prove a key it never made
    assert again == "ok"


async def test_the_login_page_names_an_impostor_in_chinese_and_takes_no_pin(fixtures: Fixtures, tmp_path: Path) -> None:
    squatted = free_port()
    async with site(fixtures, tmp_path) as s:  # the first visit paired the page with the real agent
        with impostor_of_another_user(squatted, ("127.0.0.1", s.agent.config.port)) as received:
            await s.page.goto(f"{s.url}/?agentPorts={squatted}")
            await s.page.wait_for_selector("body[data-ready=agent-missing]")
            await s.shot("login-agent-impostor")
            text = await s.page.inner_text("#agent-missing")
            pin_disabled = await s.page.is_disabled("#pin")
            repair_shown = await s.page.is_visible("#repair-agent")
            await s.page.goto(f"{s.url}/?agentPorts={squatted},{s.agent.config.port}")
            await s.page.wait_for_selector("body[data-ready]")
            ready = await s.page.get_attribute("body", "data-ready")
    assert "检测到本机有其他程序冒充证书助手" in text and "不要在本页输入证书密码" in text
    assert pin_disabled and repair_shown
    assert ready == "yes"  # with the real agent on a later port, the page goes on with it
    assert all(f["method"] == "hello" for f in _frames(received))
