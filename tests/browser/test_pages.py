"""The verifier's pages in headless Chromium, with the real agent and the real verifier."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import expect

from cert_agent.verifier.store import SmsLimit, SmsLimits
from softhsm_fixtures import Fixtures
from tests.harness.agent import certificate_of, free_port
from tests.harness.pages import choose_certificate, pass_sms, sign_in, site


async def test_enterprise_certificate_login_reaches_the_logged_in_page(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await s.shot("login-page")
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.shot("login-choose-person")
        await pass_sms(s, "p-zhang")
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


async def test_a_locked_certificate_says_so_and_asks_for_no_pin(fixtures: Fixtures, tmp_path: Path) -> None:
    token_id, cert_id = certificate_of(fixtures, "locked-ec")
    async with site(fixtures, tmp_path) as s:
        await s.page.select_option(
            "#certificate", value=json.dumps({"tokenId": token_id, "certId": cert_id}, separators=(",", ":"))
        )
        await expect(s.page.locator("#certificate-hint")).to_contain_text("证书密码已锁定")
        await expect(s.page.locator("#pin")).to_be_hidden()
        await expect(s.page.locator("#login")).to_be_disabled()
        await s.shot("login-locked-certificate")


async def test_a_person_logging_in_again_soon_sees_the_wait_counted_down_and_may_then_ask_again(
    fresh_fixtures: Fixtures, tmp_path: Path
) -> None:
    # The wait is per person (and per number): a second login within it meets it at the person step.
    limits = SmsLimits(interval=3, per_attempt=SmsLimit(10, 600), per_person=SmsLimit(10, 3600))
    async with site(fresh_fixtures, tmp_path, sms_limits=limits) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        await s.page.goto(f"{s.url}/")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")
        error = s.page.locator("#error")
        await expect(error).to_contain_text("秒后再试")
        await expect(s.page.locator("[data-person-id=p-zhang]")).to_be_disabled()
        await s.shot("login-sms-person-wait")
        await expect(error).to_contain_text("现在可以重新获取验证码", timeout=6000)
        await s.page.click("[data-person-id=p-zhang]")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
