"""The product as a taxpayer meets it: Debian's Chromium (Playwright), the real agent, the real
verifier, SoftHSM2 media. Every page state is kept as a screenshot in artifacts/."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
from pathlib import Path

from playwright.async_api import expect

from cert_agent.verifier.login import CST, next_cst_midnight
from softhsm_fixtures import Fixtures
from tests.harness.agent import free_port
from tests.harness.daemon import Daemon
from tests.harness.pages import choose_certificate, pass_sms, sign_in, site


async def test_agency_login_with_the_choice_of_a_client(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await s.page.click("#tab-agency")
        await s.shot("login-agent-tab")
        await sign_in(s, "青岛信达财税代理有限公司", "998877", tab="agency")
        await pass_sms(s, "p-zhao")
        await s.page.wait_for_selector("#step-client:not(.hidden)")
        await s.shot("login-choose-client")
        clients = await s.page.inner_text("#clients")
        assert "青岛海润贸易有限公司" in clients and "青岛蓝海制造有限公司" in clients
        assert "双正物流" not in clients  # its agreement was terminated
        await s.page.click("#clients button:has-text('青岛蓝海制造有限公司')")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        await s.shot("home-agent")
        who = await s.page.inner_text("#who")
        assert "青岛蓝海制造有限公司" in who and "青岛信达财税代理有限公司" in who


async def test_agency_without_an_agreement_is_refused_in_words(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await sign_in(s, "青岛恒信记账服务有限公司", "112244", tab="agency")
        await pass_sms(s, "p-liu")
        await s.page.wait_for_selector("#error:not(.hidden)")
        await s.shot("login-no-relationship")
        assert await s.page.inner_text("#error") == "未查询到您与该企业的关联关系信息"


async def test_enterprise_certificate_in_the_agent_tab_is_refused(fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fixtures, tmp_path) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233", tab="agency")
        assert "不属于代理机构" in await s.page.inner_text("#error")


async def test_five_wrong_codes_lock_the_account_until_midnight_cst(fresh_fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fresh_fixtures, tmp_path) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        for attempt in range(5):
            await s.page.fill("#code", "000000")
            await s.page.click("#verify")
            expected = "锁定" if attempt == 4 else f"还可尝试 {4 - attempt} 次"
            # Locators, not wait_for_function: the page's Content-Security-Policy forbids eval.
            await expect(s.page.locator("#error")).to_contain_text(expected)
        await s.shot("login-locked")
        text = await s.page.inner_text("#error")
        until = next_cst_midnight(dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M")
        assert "账号已锁定" in text and until in text and "北京时间" in text
        assert dt.datetime.now(CST).date().isoformat() < until  # it unlocks tomorrow, at 00:00 CST


async def test_initial_pin_is_flagged_changed_in_the_account_centre_and_only_the_new_one_works(
    fresh_fixtures: Fixtures, tmp_path: Path
) -> None:
    async with site(fresh_fixtures, tmp_path) as s:
        await sign_in(s, "青岛初心科技有限公司", "88888888")
        assert not await s.page.is_hidden("#initial-pin")
        await s.shot("login-initial-pin")
        await pass_sms(s, "p-chen")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        assert not await s.page.is_hidden("#initial-pin")
        await s.page.click("text=账户中心 — 税务数字证书")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await choose_certificate(s.page, "青岛初心科技有限公司")
        await s.shot("account-certificate")
        assert "91370212MA3E1L6N06" in await s.page.inner_text("#details")
        for field, value in (("#old-pin", "88888888"), ("#new-pin", "88888888"), ("#new-pin-again", "88888888")):
            await s.page.fill(field, value)
        await s.page.click("#change")
        await s.page.wait_for_selector("#error:not(.hidden)")
        assert "不能与原密码相同" in await s.page.inner_text("#error")
        for field, value in (("#old-pin", "88888888"), ("#new-pin", "Qd2026tax"), ("#new-pin-again", "Qd2026tax")):
            await s.page.fill(field, value)
        await s.page.click("#change")
        await s.page.wait_for_selector("#done:not(.hidden)")
        await s.shot("account-certificate-changed")

        await s.page.goto(f"{s.url}/")
        await s.page.wait_for_selector("body[data-ready=yes]")
        await sign_in(s, "青岛初心科技有限公司", "88888888")
        assert "证书密码错误" in await s.page.inner_text("#error")
        await sign_in(s, "青岛初心科技有限公司", "Qd2026tax")
        assert not await s.page.is_hidden("#step-person")
        assert await s.page.is_hidden("#initial-pin")


async def test_with_the_agent_stopped_the_page_explains_how_to_install_and_start_it(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with site(fixtures, tmp_path) as s:
        await s.agent_stack.aclose()  # the agent stops
        await s.page.reload()
        await s.page.wait_for_selector("body[data-ready=agent-missing]")
        text = await s.page.inner_text("#agent-missing")
        assert "未检测到证书助手" in text and "cert-agent serve" in text


async def test_a_pulled_out_token_leaves_the_certificate_list(fresh_fixtures: Fixtures, tmp_path: Path) -> None:
    async with site(fresh_fixtures, tmp_path) as s:
        options = s.page.locator("#certificate option")
        before = await options.count()
        assert "青岛蓝海制造有限公司" in await s.page.inner_text("#certificate")
        fresh_fixtures.env.pull_out(fresh_fixtures.token("golden-tax-disk").serial)
        await expect(options).to_have_count(before - 1, timeout=10000)
        await s.shot("login-token-removed")
        assert "青岛蓝海制造有限公司" not in await s.page.inner_text("#certificate")


def test_demo_starts_serves_and_stops_cleanly_twice(tmp_path: Path) -> None:
    for run in range(2):
        port, agent_port = free_port(), free_port()
        demo = Daemon(
            [
                sys.executable,
                "-m",
                "demo",
                "--dir",
                str(tmp_path / "demo"),
                "--port",
                str(port),
                "--agent-port",
                str(agent_port),
            ],
            tmp_path / f"demo-{run}.log",
        )
        lines = [demo.line() for _ in range(8)]
        assert any(f"http://127.0.0.1:{port}/?agentPort={agent_port}" in line for line in lines), lines
        assert any("88888888" in line for line in lines)
        asyncio.run(_challenge(port))
        log = demo.stop(signal.SIGINT)
        assert demo.returncode == 0, log


async def _challenge(port: int) -> None:
    import aiohttp

    origin = {"Origin": f"http://127.0.0.1:{port}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/api/challenge", json={}, headers=origin) as response,
    ):
        assert response.status == 200
