"""扫码验证: how soon a waiting page goes on after the app's answer, and how often it asks.

1. In Debian's headless Chromium, the real login page and agent on SoftHSM2: from the reference
   app's answer (``appclient.confirm_scan``, in this process) to the page leaving the scan step
   (``body[data-scan=confirmed]``), beside the same page going on after a right SMS code (from the
   click on 确认), the baseline measured in the same run. Goal: median within 500 ms.
2. The same page left waiting for 65 s with nobody scanning: the wait requests it sent (goal: at
   most one per 10 s).
3. Over HTTP, two verifiers on one PostgreSQL: the page's long poll at one, the app's answer at
   the other (woken by LISTEN/NOTIFY): answer to the poll's reply.

    python -m bench.bench_scan [--rounds N] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from cert_agent.verifier import apps
from cert_agent.verifier.appclient import confirm_scan
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.seed import PERSONS
from softhsm_fixtures.verifier_service import NO_SMS_LIMITS
from tests.harness.pages import Site, sign_in, site
from tests.harness.postgres import postgres_server
from tests.harness.verifier import ORIGIN, Clock, verifier_at

ZHANG = next(p["idNumber"] for p in PERSONS if p["personId"] == "p-zhang")


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:.0f} ms (min {min(values) * 1e3:.0f}, max {max(values) * 1e3:.0f})"


async def _to_person_step(s: Site) -> None:
    await s.page.context.clear_cookies()
    await s.page.goto(f"{s.url}/?agentPort={s.agent.config.port}")
    await s.page.wait_for_selector("body[data-ready=yes]")
    await sign_in(s, "青岛海润贸易有限公司", "112233")
    await s.page.click("[data-person-id=p-zhang]")
    await s.page.wait_for_selector("#step-code:not(.hidden)")


async def _shown_code(s: Site) -> str:
    await s.page.click("#use-scan")
    await s.page.wait_for_selector("body[data-scan=shown]")
    png = await s.page.screenshot()
    return str(zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))[0].text)


async def browser_rounds(fixtures: Fixtures, directory: Path, rounds: int, idle: float) -> None:
    scan: list[float] = []
    sms: list[float] = []
    async with site(fixtures, directory, sms_limits=NO_SMS_LIMITS) as s:
        for _ in range(rounds + 1):
            await _to_person_step(s)  # the baseline: a right SMS code
            await s.page.fill("#code", s.last_code())
            start = time.perf_counter()
            await s.page.click("#verify")
            await s.page.wait_for_url(f"{s.url}/home")
            sms.append(time.perf_counter() - start)
            await _to_person_step(s)  # 扫码验证
            code = await _shown_code(s)
            await s.page.evaluate("delete document.body.dataset.scan")
            start = time.perf_counter()
            await confirm_scan(code, s.app_credential, ZHANG)
            await s.page.wait_for_url(f"{s.url}/home")
            scan.append(time.perf_counter() - start)
        await _to_person_step(s)
        waits: list[float] = []
        s.page.on("request", lambda r: waits.append(time.perf_counter()) if r.url.endswith("/scan/wait") else None)
        await _shown_code(s)
        await asyncio.sleep(idle)
    scan, sms = scan[1:], sms[1:]  # the first round starts the token's worker
    print(f"扫码验证 in Chromium, {rounds} rounds: the app's answer to the logged-in page")
    print(f"  scan: {ms(scan)}; baseline, a right SMS code's click to the same page: {ms(sms)}")
    print(
        f"  ratio scan / sms (medians): {statistics.median(scan) / statistics.median(sms):.2f} (goal: scan <= 500 ms)"
    )
    per_10s = len(waits) / idle * 10
    print(f"  a page left waiting {idle:.0f} s sent {len(waits)} wait requests: {per_10s:.2f} per 10 s (goal <= 1)")


async def two_instances(fixtures: Fixtures, directory: Path, rounds: int) -> None:
    now_clock = Clock(dt.datetime.now(dt.UTC))
    with postgres_server(directory / "postgres") as server:
        database = server.new_database()
        async with (
            verifier_at(fixtures, directory / "a", now_clock, database=database) as a,
            verifier_at(fixtures, directory / "b", now_clock, database=database) as b,
        ):
            credential = (await apps.register(a.store, "bench", now_clock())).credential
            woken: list[float] = []
            for _ in range(rounds):
                _, chosen = await a.certificate_step("hairun-ec")
                attempt: dict[str, Any] = {"attemptId": chosen["attemptId"]}
                _, shown = await a.post("/api/login/scan", {**attempt, "personId": "p-zhang"})
                waiting = asyncio.create_task(a.post("/api/login/scan/wait", attempt))
                await asyncio.sleep(0.1)
                start = time.perf_counter()
                await confirm_scan(str(shown["qrText"]).replace(ORIGIN, b.url), credential, ZHANG)
                await waiting
                woken.append(time.perf_counter() - start)
                a.session.cookie_jar.clear()
    print(f"two verifiers on one PostgreSQL, {rounds} rounds: answer at B to the long poll's reply at A: {ms(woken)}")


async def main(rounds: int, idle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp) / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        for folder in ("browser", "a", "b"):
            (Path(tmp) / folder).mkdir()
        await browser_rounds(fixtures, Path(tmp) / "browser", rounds, idle)
        await two_instances(fixtures, Path(tmp), rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--idle", type=float, default=65.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.idle))
