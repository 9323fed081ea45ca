"""The verifier's pages in headless Chromium, with the real agent and the real verifier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from playwright.async_api import Page, expect

from cert_agent.verifier.app import create_app
from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import OUTBOX, seeded_login_service
from tests.browser import ARTIFACTS, chromium
from tests.conftest import RunningAgent, free_port, running_agent


@dataclass
class Site:
    page: Page
    url: str
    agent: RunningAgent
    outbox: Path
    agent_stack: AsyncExitStack

    def last_code(self) -> str:
        return str(json.loads(self.outbox.read_text(encoding="utf-8").splitlines()[-1])["code"])

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@asynccontextmanager
async def site(fixtures: Fixtures, directory: Path) -> AsyncIterator[Site]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    login = seeded_login_service(fixtures, directory, origin)
    runner = web.AppRunner(create_app(login))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with AsyncExitStack() as agent_stack, chromium() as browser:
            agent = await agent_stack.enter_async_context(running_agent(fixtures, allowed_origins=(origin,)))
            page = await browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
            await page.goto(f"{origin}/?agentPort={agent.config.port}")
            await page.wait_for_selector("body[data-ready]")
            yield Site(page, origin, agent, directory / OUTBOX, agent_stack)
    finally:
        await runner.cleanup()
        login.store.close()


async def test_enterprise_certificate_login_reaches_the_logged_in_page(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await s.shot("login-page")
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.shot("login-choose-person")
        await pass_sms(s, "p-wang")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.shot("home-enterprise")
        assert "青岛海润贸易有限公司" in await s.page.inner_text("#who")


async def test_wrong_pin_on_the_page_shows_the_tries_left(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await choose_certificate(s.page, "青岛蓝海制造有限公司")
        await s.page.fill("#pin", "000000")
        await s.page.click("#login")
        await s.page.wait_for_selector("#error:not(.hidden)")
        await s.shot("login-wrong-pin")
        assert "证书密码错误，还可尝试" in await s.page.inner_text("#error")


async def test_page_without_a_running_agent_explains_how_to_start_it(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await s.page.goto(f"{s.url}/?agentPort={free_port()}")
        await s.page.wait_for_selector("body[data-ready=agent-missing]")
        await s.shot("login-agent-missing")
        text = await s.page.inner_text("#agent-missing")
        assert "cert-agent serve" in text and "未检测到证书助手" in text


async def choose_certificate(page: Page, name: str) -> None:
    """Pick the certificate whose option names ``name``, as a user does in the list."""
    labels: list[str] = await page.eval_on_selector_all("#certificate option", "os => os.map(o => o.textContent)")
    await page.select_option("#certificate", label=next(label for label in labels if name in label))


async def sign_in(s: Site, company: str, pin: str, *, tab: str = "enterprise") -> None:
    await s.page.click(f"#tab-{tab}")
    await choose_certificate(s.page, company)
    await s.page.fill("#pin", pin)
    await s.page.click("#login")
    await s.page.wait_for_selector("#step-person:not(.hidden), #error:not(.hidden)")


async def pass_sms(s: Site, person_id: str) -> None:
    await s.page.click(f"[data-person-id={person_id}]")
    await s.page.wait_for_selector("#step-code:not(.hidden)")
    await s.page.fill("#code", s.last_code())
    await s.page.click("#verify")


async def test_sms_resend_waits_with_a_countdown_and_the_page_obeys_its_csp(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        console: list[str] = []
        s.page.on("console", lambda message: console.append(message.text))
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        resend = s.page.locator("#resend")
        await expect(resend).to_be_disabled()
        await expect(resend).to_contain_text("秒）")
        await s.shot("login-sms-countdown")
        assert not [line for line in console if "Content Security Policy" in line]
