"""PC/SC hot-plug with real parts: pcscd, vsmartcard's virtual reader (vpcd) and a virtual card
the test inserts and removes (tests/harness/vcard.py). The card's ATR is the media catalog's
test entry, whose driver is never installed."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from softhsm_fixtures import Fixtures
from tests.harness.agent import Client, connect, running_agent
from tests.harness.vcard import TEST_UKEY_ATR, Pcscd, VirtualCard, vpcd_available

pytestmark = pytest.mark.skipif(  # never skipped in CI, where scripts/setup.sh installs them
    not vpcd_available() and not os.environ.get("CI"),
    reason="pcscd and vsmartcard-vpcd are not installed (scripts/setup.sh installs them)",
)


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    daemon = Pcscd()
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def card(pcscd: Pcscd) -> Iterator[VirtualCard]:
    virtual = VirtualCard()
    yield virtual
    virtual.remove()


async def event_within(client: Client, name: str, seconds: float) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    event = await client.event(name, timeout=seconds)
    return event, time.monotonic() - started


async def test_a_card_inserted_and_removed_reaches_the_page_as_events(fixtures: Fixtures, card: VirtualCard) -> None:
    async with running_agent(fixtures, watch_readers=True, poll_interval=5.0) as agent, connect(agent) as client:
        await asyncio.sleep(0.5)  # the watcher has pcscd's first word
        card.insert()
        inserted, _ = await event_within(client, "cardInserted", 3)
        assert inserted["data"] == {"reader": card.reader_name, "atr": TEST_UKEY_ATR.hex().upper()}
        card.remove()
        removed, _ = await event_within(client, "cardRemoved", 3)
        assert removed["data"] == {"reader": card.reader_name, "atr": TEST_UKEY_ATR.hex().upper()}


async def test_a_card_without_its_driver_is_reported_with_the_catalogs_driver(
    fixtures: Fixtures, card: VirtualCard
) -> None:
    async with running_agent(fixtures, watch_readers=True) as agent, connect(agent) as client:
        card.insert()
        problem, _ = await event_within(client, "mediumWithoutDriver", 5)
        data = problem["data"]
        assert isinstance(data, dict)
        assert data["reader"] == card.reader_name and data["atr"] == TEST_UKEY_ATR.hex().upper()
        assert data["medium"] == "税务UKey" and data["driver"]["name"].startswith("测试用虚拟税务UKey")
        assert data["error"]["code"] == "MEDIUM_DRIVER_MISSING" and "未安装其驱动程序" in data["error"]["message"]
        listed = (await client.call("listCertificates"))["result"]
        assert [p["reader"] for p in listed["problems"] if "reader" in p] == [card.reader_name]
        assert listed["tokens"]  # the SoftHSM2 tokens are listed as before
        card.remove()
        await event_within(client, "cardRemoved", 3)
        listed = (await client.call("listCertificates"))["result"]
        assert not [p for p in listed["problems"] if "reader" in p]


def test_doctor_names_the_reader_the_atr_and_the_driver_to_install(fixtures: Fixtures, card: VirtualCard) -> None:
    card.insert()
    time.sleep(0.5)
    result = subprocess.run(
        [sys.executable, "-m", "cert_agent", "doctor", "--module", fixtures.module],
        env=fixtures.env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = next(line for line in result.stdout.splitlines() if card.reader_name in line)
    assert line.startswith("✗") and TEST_UKEY_ATR.hex().upper() in line
    assert "未安装其驱动程序" in line and "测试用虚拟税务UKey" in line
    assert result.returncode != 0


async def test_without_pcscd_tokens_are_polled_the_watcher_backs_off_and_recovers_when_it_starts(
    fixtures: Fixtures, pcscd: Pcscd, card: VirtualCard, caplog: pytest.LogCaptureFixture
) -> None:
    if pcscd.process is None:
        pytest.skip("the system's pcscd runs here; the test stops only one it started itself")
    caplog.set_level(logging.WARNING, logger="cert_agent.pcsc")
    pcscd.stop()
    try:
        started = time.process_time()
        async with running_agent(fixtures, watch_readers=True) as agent, connect(agent) as client:
            await asyncio.sleep(3)
            tokens = (await client.call("listCertificates"))["result"]["tokens"]
            assert tokens  # found by the poll, pcscd or not
            warnings = [r for r in caplog.records if r.name == "cert_agent.pcsc"]
            assert len(warnings) == 1 and "pcscd" in warnings[0].getMessage()  # said once, not per retry
            assert time.process_time() - started < 2.5  # 3 s of retries cost little: backing off, not spinning
            pcscd.start()
            card.insert()
            await event_within(client, "cardInserted", 10)  # within the back-off's next try
    finally:
        pcscd.start()  # for the tests after this one (a no-op when it runs)
