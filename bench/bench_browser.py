"""Browser login from page load to the logged-in page, typing excluded (fields are filled at
once), in Debian's headless Chromium against the real agent and verifier on SoftHSM2.

    python bench/bench_browser.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from softhsm_fixtures import build_fixtures
from softhsm_fixtures.verifier_service import NO_SMS_LIMITS
from tests.harness.pages import pass_sms, sign_in, site


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp) / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        times = []
        async with site(fixtures, Path(tmp), sms_limits=NO_SMS_LIMITS) as s:
            start_url = f"{s.url}/?agentPort={s.agent.config.port}"
            for _ in range(rounds + 1):
                await s.page.context.clear_cookies()
                start = time.perf_counter()
                await s.page.goto(start_url)
                await s.page.wait_for_selector("body[data-ready=yes]")
                await sign_in(s, "青岛海润贸易有限公司", "112233")
                await pass_sms(s, "p-zhang")
                await s.page.wait_for_url(f"{s.url}/home")
                await s.page.wait_for_selector("body[data-ready=yes]")
                times.append(time.perf_counter() - start)
    measured = times[1:]  # the first round starts the token's worker process
    print(f"browser certificate login, page load to logged-in page, {rounds} rounds (typing excluded)")
    print(
        f"  median {statistics.median(measured) * 1e3:.0f} ms, min {min(measured) * 1e3:.0f} ms, "
        f"max {max(measured) * 1e3:.0f} ms; first login (worker start) {times[0] * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
