"""The flows that matter, in Debian's Firefox ESR (Marionette, the stock browser, no download):
certificate login, agency login, the account-centre PIN change, a page of another origin kept
out, and the agent not running. cert-agent.js is the same file Chromium runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from softhsm_fixtures import Fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.firefox import firefox_available
from tests.harness.pages import choose_certificate, pass_sms, sign_in, site

pytestmark = pytest.mark.skipif(not firefox_available(), reason="firefox-esr is not installed (setup.sh installs it)")


async def test_certificate_login_in_firefox(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path, browser="firefox") as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.shot("firefox-login-person")
        await pass_sms(s, "p-zhang")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.shot("firefox-home")
        assert "青岛海润贸易有限公司" in await s.page.inner_text("#who")


async def test_agency_login_in_firefox(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path, browser="firefox") as s:
        await sign_in(s, "青岛信达财税代理有限公司", "998877", tab="agency")
        await pass_sms(s, "p-zhao")
        await s.page.wait_for_selector("#step-client:not(.hidden)")
        await s.page.click(f"#clients button[data-client-id='{TAXPAYERS['lanhai'].taxpayer_id}']")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        who = await s.page.inner_text("#who")
        assert "青岛蓝海制造有限公司" in who and "青岛信达财税代理有限公司" in who


async def test_the_pin_change_in_the_account_centre_in_firefox(fresh_fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fresh_fixtures, tmp_path, browser="firefox") as s:
        await sign_in(s, "青岛初心科技有限公司", "88888888")
        await pass_sms(s, "p-chen")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.page.click("a[href='/account/certificate']")  # as the person does, from the home page
        await s.page.wait_for_url(f"{s.url}/account/certificate")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await choose_certificate(s.page, "青岛初心科技有限公司")
        await s.page.wait_for_selector("#details *")  # the chosen certificate is described
        await s.shot("firefox-account-certificate")
        for field, value in (("#old-pin", "88888888"), ("#new-pin", "Qd2026tax"), ("#new-pin-again", "Qd2026tax")):
            await s.page.fill(field, value)
        await s.page.click("#change")
        await s.page.wait_for_selector("#done:not(.hidden)")
        await s.shot("firefox-account-certificate-changed")


async def test_a_page_of_another_origin_is_kept_out_in_firefox(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path, browser="firefox") as s:
        # The same page from http://localhost:PORT: an origin the agent was not told to allow.
        other = s.url.replace("127.0.0.1", "localhost")
        await s.page.goto(f"{other}/?agentPort={s.agent.config.port}")
        await s.page.wait_for_selector("body[data-ready=agent-missing]")  # refused before the upgrade
        assert await s.page.eval_on_selector_all("#certificate option", "") == []  # no certificate reached it
        await s.shot("firefox-other-origin")


async def test_the_agent_not_running_is_explained_in_firefox(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path, browser="firefox") as s:
        await s.agent_stack.aclose()  # the agent stops
        await s.page.goto(f"{s.url}/?agentPort={s.agent.config.port}")
        await s.page.wait_for_selector("#agent-missing:not(.hidden)")
        await s.shot("firefox-agent-missing")
        assert "cert-agent serve" in await s.page.inner_text("#agent-missing")
