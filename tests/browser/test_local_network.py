"""A tax bureau page is public https: current Chromium asks before it lets such a page reach the
agent on 127.0.0.1 (Local Network Access). Debian's Chromium, headless, with the verifier's page
served over https from an address treated as public, meets the three cases a taxpayer meets:
no permission yet, the managed policy our own command installs, and a permission granted."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright, expect

from cert_agent.verifier.app import create_app
from softhsm_fixtures import Fixtures
from softhsm_fixtures.verifier_service import OUTBOX, seeded_login_service
from tests.harness.agent import free_port, running_agent
from tests.harness.browser import CHROMIUM_ARGS, chromium_path
from tests.harness.pages import Site, pass_sms, sign_in
from tests.harness.selfsigned import write_self_signed


def _tls_context(directory: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1 (the browser is told to accept it)."""
    cert_path, key_path = write_self_signed(directory, "tls", "127.0.0.1", days=1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@asynccontextmanager
async def public_site(
    fixtures: Fixtures, directory: Path, *, grant: bool = False, policy: bool = False
) -> AsyncIterator[Site]:
    port = free_port()
    origin = f"https://127.0.0.1:{port}"
    login = await seeded_login_service(fixtures, directory, origin)
    runner = web.AppRunner(create_app(login, secure_cookies=True))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=_tls_context(directory)).start()
    policy_command = [sys.executable, "-m", "cert_agent", "browser-policy", "--allow-origin", origin]
    try:
        if policy:  # the real thing: our command writes /etc/chromium/policies/managed (root)
            subprocess.run([*policy_command, "install"], check=True, capture_output=True)
        args = [*CHROMIUM_ARGS, "--ignore-certificate-errors", f"--ip-address-space-overrides=127.0.0.1:{port}=public"]
        async with AsyncExitStack() as agent_stack, async_playwright() as playwright:
            agent = await agent_stack.enter_async_context(running_agent(fixtures, allowed_origins=(origin,)))
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=args)
            context = await browser.new_context(ignore_https_errors=True, locale="zh-CN")
            if grant:
                await context.grant_permissions(["local-network-access"], origin=origin)
            page = await context.new_page()
            await page.goto(f"{origin}/?agentPort={agent.config.port}")
            await page.wait_for_selector("body[data-ready]")
            yield Site(page, origin, agent, directory / OUTBOX, agent_stack)
            await browser.close()
    finally:
        if policy:  # no other test runs under a policy it did not ask for
            subprocess.run([*policy_command, "remove"], check=True, capture_output=True)
        await runner.cleanup()


async def _logs_in(s: Site) -> None:
    await sign_in(s, "青岛海润贸易有限公司", "112233")
    await pass_sms(s, "p-zhang")
    await s.page.wait_for_url(f"{s.url}/home")
    await expect(s.page.locator("#who")).to_contain_text("青岛海润贸易有限公司")


async def test_without_permission_the_page_asks_on_a_click_and_explains_a_refusal(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with public_site(fixtures, tmp_path) as s:
        assert await s.page.get_attribute("body", "data-ready") == "ask-permission"
        await expect(s.page.locator("#allow-agent")).to_be_visible()
        await s.shot("lna-ask")
        await s.page.click("#allow-agent-button")  # headless Chromium answers the prompt with "deny"
        box = s.page.locator("#agent-missing")
        await expect(box).to_have_attribute("data-code", "LOCAL_NETWORK_DENIED")
        await expect(box).to_contain_text("网站设置")
        await expect(box).to_contain_text("本地网络访问")
        await s.shot("lna-denied")


async def test_with_the_policy_our_command_installs_the_login_succeeds_without_a_prompt(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with public_site(fixtures, tmp_path, policy=True) as s:
        assert await s.page.get_attribute("body", "data-ready") == "yes"
        await _logs_in(s)
        await s.shot("lna-policy-home")


async def test_with_the_permission_granted_and_no_policy_the_login_succeeds(fixtures: Fixtures, tmp_path: Path) -> None:
    async with public_site(fixtures, tmp_path, grant=True) as s:
        assert await s.page.get_attribute("body", "data-ready") == "yes"
        await _logs_in(s)
