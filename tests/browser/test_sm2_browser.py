"""The login flows in Debian's Chromium on SM2 media: the software SKF device behind a real agent,
the verifier checking SM2 chains, CRLs and tokens. Screenshots in artifacts/."""

from __future__ import annotations

from pathlib import Path

from softhsm_fixtures import Fixtures
from softhsm_fixtures.skf_build import SkfFixtures
from tests.harness.pages import Site, choose_certificate, pass_sms, site


async def _sign_in_sm2(s: Site, company: str, pin: str, tab: str = "enterprise") -> None:
    page = s.page
    await page.click(f"#tab-{tab}")
    await choose_certificate(page, f"国密] {company}")
    await page.fill("#pin", pin)
    await page.click("#login")
    await page.wait_for_selector("#step-person:not(.hidden), #error:not(.hidden)")


async def test_certificate_login_with_an_sm2_ukey(
    fixtures: Fixtures, skf_fixtures: SkfFixtures, tmp_path: Path
) -> None:
    async with site(fixtures, tmp_path, skf=skf_fixtures) as s:
        await _sign_in_sm2(s, "青岛海润贸易有限公司", skf_fixtures.medium("sm2-ukey").pin)
        await s.shot("login-sm2-person")
        assert await s.page.is_hidden("#error"), await s.page.inner_text("#error")
        await pass_sms(s, "p-zhang")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.shot("home-sm2")
        assert "青岛海润贸易有限公司" in await s.page.inner_text("#who")


async def test_agency_login_with_an_sm2_ukey(fixtures: Fixtures, skf_fixtures: SkfFixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path, skf=skf_fixtures) as s:
        await _sign_in_sm2(s, "青岛信达财税代理有限公司", skf_fixtures.medium("sm2-agency").pin, tab="agency")
        await pass_sms(s, "p-zhao")
        await s.page.wait_for_selector("#step-client:not(.hidden)")
        await s.page.click("#clients button:has-text('青岛海润贸易有限公司')")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        who = await s.page.inner_text("#who")
        assert "青岛海润贸易有限公司" in who and "青岛信达财税代理有限公司" in who


async def test_an_sm2_ukey_on_its_default_pin_is_flagged_and_its_pin_changed_in_the_account_centre(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures, tmp_path: Path
) -> None:
    skf = fresh_skf_fixtures
    async with site(fixtures, tmp_path, skf=skf) as s:
        await _sign_in_sm2(s, "青岛初心科技有限公司", "12345678")
        assert not await s.page.is_hidden("#initial-pin")  # the device's own default-PIN flag
        await pass_sms(s, "p-chen")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.page.click("text=账户中心 — 税务数字证书")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await choose_certificate(s.page, "国密] 青岛初心科技有限公司")
        details = await s.page.inner_text("#details")
        assert "SM2（国密 SM2/SM3）" in details and "SM2 256" in details
        await s.shot("account-certificate-sm2")
        for field, value in (("#old-pin", "12345678"), ("#new-pin", "Qd2026sm2"), ("#new-pin-again", "Qd2026sm2")):
            await s.page.fill(field, value)
        await s.page.click("#change")
        await s.page.wait_for_selector("#done:not(.hidden)")
        await s.page.goto(f"{s.url}/")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await _sign_in_sm2(s, "青岛初心科技有限公司", "Qd2026sm2")
        assert not await s.page.is_hidden("#step-person") and await s.page.is_hidden("#initial-pin")
    assert skf.store.pin_state("dev-sm2-default-pin", "SM2")["default"] == "0"
