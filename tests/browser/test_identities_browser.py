"""特定主体 and 身份切换 in real Chromium, on SQLite and PostgreSQL: a cross-region enterprise picks
its identity after verification and switches tax authority from the greeting; a person switches
roles in the account centre; another enterprise stays out of a certificate login's reach."""

from __future__ import annotations

from pathlib import Path

from softhsm_fixtures import Fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.pages import at_home, pass_sms, sign_in, site


async def test_a_cross_region_enterprise_enters_an_identity_and_switches_tax_authority(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛双正物流有限公司", "246810")
        await pass_sms(s, "p-chen")
        await s.page.wait_for_selector("#step-identity:not(.hidden)")
        await s.shot("login-choose-identity")
        await s.page.click("[data-identity-id=x-sz-huangdao]")
        await at_home(s)
        assert "黄岛区报验户" in await s.page.inner_text("#greeting")
        assert "国家税务总局青岛市黄岛区税务局" in await s.page.inner_text("#who")
        await s.page.click("#switch-authority")  # 【切换主管税务机关】, from the greeting
        await s.shot("home-switch-authority")
        await s.page.click("#authority-list [data-identity-id='']")
        await s.page.wait_for_selector("body[data-switched=own]")
        assert await s.page.inner_text("#greeting") == "欢迎，青岛双正物流有限公司（财务负责人）"
        assert "国家税务总局青岛市李沧区税务局" in await s.page.inner_text("#who")


async def test_a_person_switches_roles_in_the_account_centre_without_logging_out(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await pass_sms(s, "p-wang", phone_index=0)
        await at_home(s)
        assert "（财务负责人）" in await s.page.inner_text("#greeting")
        await s.page.click("a[href='/account/identities']")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await s.shot("account-identities")
        hairun = TAXPAYERS["hairun"].taxpayer_id
        await s.page.click(f"#enterprises [data-taxpayer-id='{hairun}'][data-role='办税员']")
        await at_home(s)
        assert "（办税员）" in await s.page.inner_text("#greeting")


async def test_another_linked_enterprise_is_shown_but_needs_its_own_certificate(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛初心科技有限公司", "88888888")
        await pass_sms(s, "p-chen")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.goto(f"{s.url}/account/identities")
        await s.page.wait_for_selector("body[data-ready=yes]")
        other = f"#enterprises [data-taxpayer-id='{TAXPAYERS['shuangzheng'].taxpayer_id}']"
        assert await s.page.is_disabled(other)
        assert "需使用该企业的证书登录" in await s.page.inner_text(other)
        assert "证书登录只能在证书所属企业内切换身份" in await s.page.inner_text("#scope")
