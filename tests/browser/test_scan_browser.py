"""扫码验证 in real Chromium, as a person does it: the QR code is read off the page's screenshot
by a real decoder (ZXing's C++ port, zxing-cpp), as a phone's camera reads the screen, and
answered by the reference tax app as a real process (`cert-verifier scan-confirm`); the page goes
on by itself. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import zxingcpp
from PIL import Image

from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import PERSONS
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.pages import Site, sign_in, site

ID_NUMBER = {p["personId"]: p["idNumber"] for p in PERSONS}


async def read_qr_code(s: Site) -> str:
    """The QR code's text, decoded from a screenshot of the page."""
    await s.page.wait_for_selector("body[data-scan=shown]")
    png = await s.page.screenshot(full_page=True)
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, f"{len(found)} codes on the page"
    return str(found[0].text)


@dataclass
class Answered:
    returncode: int
    stderr: str


async def phone_answers(s: Site, code: str, person: str) -> Answered:
    """The reference tax app answers the code (a real process, the app's credential in its env);
    waited for without blocking the loop the test's verifier answers on."""
    env = {**os.environ, "CERT_VERIFIER_APP_CREDENTIAL": s.app_credential}
    command = ["-m", "cert_agent.verifier", "scan-confirm", code, "--id-number", ID_NUMBER[person]]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    return Answered(process.returncode or 0, stderr.decode("utf-8", "replace"))


async def test_scan_verification_logs_the_enterprise_in(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")  # an SMS code is sent, as before
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        await s.page.click("#use-scan")  # 扫码验证 instead, bottom right
        code = await read_qr_code(s)
        await s.shot("scan-shown")
        answered = await phone_answers(s, code, "p-zhang")
        assert answered.returncode == 0, answered.stderr
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        assert "青岛海润贸易有限公司" in await s.page.inner_text("#who")


async def test_scan_verification_in_agency_login_goes_on_to_the_client_choice(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛信达财税代理有限公司", "998877", tab="agency")
        await s.page.click("[data-person-id=p-zhao]")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        await s.page.click("#use-scan")
        assert (await phone_answers(s, await read_qr_code(s), "p-zhao")).returncode == 0
        await s.page.wait_for_selector("#step-client:not(.hidden)")
        await s.page.click(f"#clients button[data-client-id='{TAXPAYERS['lanhai'].taxpayer_id}']")
        await s.page.wait_for_url(f"{s.url}/home")
        await s.page.wait_for_selector("body[data-ready]")
        assert "青岛蓝海制造有限公司" in await s.page.inner_text("#who")


async def test_a_person_without_a_phone_is_sent_to_scan_verification_with_the_reason(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛蓝海制造有限公司", "556677")
        assert "手机号码为空" in await s.page.inner_text("[data-person-id=p-zhou]")
        await s.page.click("[data-person-id=p-zhou]")
        code = await read_qr_code(s)
        assert "手机号码为空" in await s.page.inner_text("#scan-why")
        assert await s.page.is_hidden("#use-sms")
        await s.shot("scan-no-phone")
        assert (await phone_answers(s, code, "p-zhou")).returncode == 0
        await s.page.wait_for_url(f"{s.url}/home")


async def test_another_persons_face_is_refused_on_the_page_and_a_new_code_can_be_shown(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        await s.page.click("[data-person-id=p-zhang]")
        await s.page.click("#use-scan")
        first = await read_qr_code(s)
        refused = await phone_answers(s, first, "p-wang")  # 王秀英 scans 张伟's code
        assert refused.returncode == 1 and "SCAN_WRONG_PERSON" in refused.stderr
        await s.page.wait_for_selector("body[data-scan=SCAN_WRONG_PERSON]")
        assert "不一致" in await s.page.inner_text("#error")
        await s.shot("scan-wrong-person")
        await s.page.click("#refresh-scan")
        second = await read_qr_code(s)
        assert second != first
        assert "SCAN_REPLAYED" in (await phone_answers(s, first, "p-zhang")).stderr  # the old code is spent
        assert (await phone_answers(s, second, "p-zhang")).returncode == 0
        await s.page.wait_for_url(f"{s.url}/home")


async def test_a_person_with_two_phones_chooses_the_number_the_code_goes_to(
    fixtures: Fixtures, tmp_path: Path, database: str | None
) -> None:
    async with site(fixtures, tmp_path, database=database) as s:
        await sign_in(s, "青岛海润贸易有限公司", "112233")
        assert "139****0012" in await s.page.inner_text("[data-person-id=p-wang]")
        await s.page.click("[data-person-id=p-wang]")
        await s.page.wait_for_selector("#step-phone:not(.hidden)")
        await s.shot("sms-choose-phone")
        await s.page.click("#phones button[data-phone-index='1']")
        await s.page.wait_for_selector("#step-code:not(.hidden)")
        assert await s.page.inner_text("#sent-to") == "139****0012"
        assert json.loads(s.outbox.read_text(encoding="utf-8").splitlines()[-1])["phone"] == "13900000012"
        await s.page.fill("#code", s.last_code())
        await s.page.click("#verify")
        await s.page.wait_for_url(f"{s.url}/home")
