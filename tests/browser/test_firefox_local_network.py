"""Firefox's own Local Network Access, switched on (the ESR leaves it off by default): a public
https page's connection to the agent is held while Firefox's prompt waits for the user. The page
must say so in Chinese (not 证书助手响应超时), and the policy `cert-agent browser-policy` writes
must let the configured site through without the prompt.

The page is https://etax.test:PORT (Firefox resolves the name to 127.0.0.1 by pref and treats the
address as public by pref), so the policy is shown to name the page's host, not the agent's."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from cert_agent.verifier.app import create_app
from softhsm_fixtures import Fixtures
from softhsm_fixtures.verifier_service import OUTBOX, seeded_login_service
from tests.harness.agent import free_port, running_agent
from tests.harness.firefox import firefox, firefox_available
from tests.harness.pages import Site, pass_sms, sign_in
from tests.harness.selfsigned import write_self_signed

pytestmark = pytest.mark.skipif(not firefox_available(), reason="firefox-esr is not installed (setup.sh installs it)")

HOST = "etax.test"


@asynccontextmanager
async def public_site_in_firefox(fixtures: Fixtures, directory: Path, *, policy: bool = False) -> AsyncIterator[Site]:
    port = free_port()
    origin = f"https://{HOST}:{port}"
    login = await seeded_login_service(fixtures, directory, origin)
    runner = web.AppRunner(create_app(login, secure_cookies=True))
    await runner.setup()
    cert_path, key_path = write_self_signed(directory, "tls", HOST, days=1)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_path, key_path)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    prefs = {
        "network.lna.enabled": True,
        "network.lna.blocking": True,  # prompt
        "network.lna.websocket.enabled": True,
        "network.lna.address_space.public.override": f"127.0.0.1:{port}",  # this page is public
        "network.dns.localDomains": HOST,  # etax.test is 127.0.0.1
    }
    policy_command = [sys.executable, "-m", "cert_agent", "browser-policy", "--allow-origin", origin]
    try:
        if policy:  # the real thing: our command writes /etc/firefox/policies/policies.json (root)
            subprocess.run([*policy_command, "install"], check=True, capture_output=True)
        async with AsyncExitStack() as agent_stack, firefox(prefs, accept_test_certificates=True) as page:
            agent = await agent_stack.enter_async_context(running_agent(fixtures, allowed_origins=(origin,)))
            await page.goto(f"{origin}/?agentPort={agent.config.port}")
            await page.wait_for_selector("body[data-ready]")
            yield Site(page, origin, agent, directory / OUTBOX, agent_stack)  # type: ignore[arg-type]
    finally:
        if policy:  # no other test runs under a policy it did not ask for
            subprocess.run([*policy_command, "remove"], check=True, capture_output=True)
        await runner.cleanup()


async def test_a_held_connection_while_firefox_asks_is_explained_not_called_a_timeout(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with public_site_in_firefox(fixtures, tmp_path) as s:
        await s.page.wait_for_selector("body[data-ready=ask-permission]")  # Firefox says "prompt" too
        await s.page.click("#allow-agent-button")  # Firefox now asks; headless, nobody answers
        await s.page.wait_for_selector("#agent-missing[data-code=LOCAL_NETWORK_PROMPT]")
        text = await s.page.inner_text("#agent-missing")
        assert "允许" in text and "本地网络" in text and "超时" not in text
        await s.shot("firefox-lna-prompt")


async def test_with_the_policy_our_command_installs_firefox_lets_the_login_through(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with public_site_in_firefox(fixtures, tmp_path, policy=True) as s:
        # Firefox still reports the permission as "prompt" under the policy: the page asks for the
        # click, and the connection then goes through without a prompt.
        await s.page.wait_for_selector("body[data-ready=ask-permission]")
        await s.page.click("#allow-agent-button")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await pass_sms(s, "p-zhang")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        assert "青岛海润贸易有限公司" in await s.page.inner_text("#who")
        await s.shot("firefox-lna-policy-home")
