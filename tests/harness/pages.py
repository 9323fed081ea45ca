"""The verifier's pages in headless Chromium (or Firefox) with a real agent: a site to log in to,
and the steps a taxpayer takes on it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from playwright.async_api import Page

from cert_agent.verifier import apps
from cert_agent.verifier.app import create_app
from cert_agent.verifier.store import SmsLimits
from softhsm_fixtures import Fixtures
from softhsm_fixtures.skf_build import SkfFixtures
from softhsm_fixtures.verifier_service import OUTBOX, seeded_login_service
from tests.harness.agent import RunningAgent, free_port, running_agent
from tests.harness.browser import ARTIFACTS, chromium
from tests.harness.firefox import firefox


class BrowserPage(Protocol):
    """What the flows call on a page: Playwright's Page, or Firefox's (``harness/firefox.py``)."""

    async def goto(self, url: str) -> Any: ...
    async def click(self, selector: str) -> Any: ...
    async def fill(self, selector: str, value: str) -> Any: ...
    async def wait_for_selector(self, selector: str) -> Any: ...
    async def wait_for_url(self, url: str) -> Any: ...
    async def inner_text(self, selector: str) -> str: ...
    async def is_hidden(self, selector: str) -> bool: ...
    async def eval_on_selector_all(self, selector: str, expression: str) -> Any: ...
    async def select_option(self, selector: str, *, label: str) -> Any: ...
    async def screenshot(self, *, path: str, full_page: bool) -> Any: ...


class SiteLike(Protocol):
    """A site in either browser, for the flows' helpers."""

    @property
    def page(self) -> BrowserPage: ...
    @property
    def url(self) -> str: ...
    def last_code(self) -> str: ...


@dataclass
class Site:
    page: Page
    url: str
    agent: RunningAgent
    outbox: Path
    agent_stack: AsyncExitStack
    app_credential: str = ""  # a tax app registered with the site's verifier (扫码验证)

    def last_code(self) -> str:
        return str(json.loads(self.outbox.read_text(encoding="utf-8").splitlines()[-1])["code"])

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@asynccontextmanager
async def site(
    fixtures: Fixtures,
    directory: Path,
    *,
    sms_limits: SmsLimits | None = None,
    skf: SkfFixtures | None = None,
    browser: str = "chromium",
    database: str | None = None,
) -> AsyncIterator[Site]:
    """The verifier's pages and an agent, in Chromium or (``browser="firefox"``) Firefox ESR; with
    ``skf``, the agent serves its SM2 media beside the SoftHSM2 tokens and the verifier trusts its
    SM2 PKI too; on SQLite in ``directory``, or on the PostgreSQL ``database`` URL."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    login = await seeded_login_service(fixtures, directory, origin, sms_limits=sms_limits, skf=skf, database=database)
    credential = (await apps.register(login.store, "青岛税务APP", dt.datetime.now(dt.UTC))).credential
    modules = (fixtures.module,) if skf is None else (fixtures.module, skf.library)
    runner = web.AppRunner(create_app(login))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with AsyncExitStack() as agent_stack, AsyncExitStack() as browsers:
            agent = await agent_stack.enter_async_context(
                running_agent(fixtures, allowed_origins=(origin,), modules=modules)
            )
            page: Any  # a Playwright Page, or a FirefoxPage (harness/firefox.py) for the Firefox flows
            if browser == "firefox":
                page = await browsers.enter_async_context(firefox())
            else:
                chrome = await browsers.enter_async_context(chromium())
                page = await chrome.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
            await page.goto(f"{origin}/?agentPort={agent.config.port}")
            await page.wait_for_selector("body[data-ready]")
            yield Site(page, origin, agent, directory / OUTBOX, agent_stack, credential)
    finally:
        await runner.cleanup()


async def choose_certificate(page: BrowserPage, name: str) -> None:
    """Pick the certificate whose option names ``name``, as a user does in the list."""
    labels: list[str] = await page.eval_on_selector_all("#certificate option", "os => os.map(o => o.textContent)")
    await page.select_option("#certificate", label=next(label for label in labels if name in label))


async def at_home(s: SiteLike) -> None:
    """Wait for the logged-in page, loaded."""
    await s.page.wait_for_url(f"{s.url}/home")
    await s.page.wait_for_selector("body[data-ready=yes]")


async def sign_in(s: SiteLike, company: str, pin: str, *, tab: str = "enterprise") -> None:
    await s.page.click(f"#tab-{tab}")
    await choose_certificate(s.page, company)
    await s.page.fill("#pin", pin)
    await s.page.click("#login")
    await s.page.wait_for_selector("#step-person:not(.hidden), #error:not(.hidden)")


async def pass_sms(s: SiteLike, person_id: str, phone_index: int | None = None) -> None:
    """Pick the person (and, given, which of their phones gets the code) and type the code."""
    await s.page.click(f"[data-person-id={person_id}]")
    if phone_index is not None:
        await s.page.click(f"#phones button[data-phone-index='{phone_index}']")
    await s.page.wait_for_selector("#step-code:not(.hidden)")
    await s.page.fill("#code", s.last_code())
    await s.page.click("#verify")
