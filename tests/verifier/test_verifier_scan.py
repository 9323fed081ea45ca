"""扫码验证 over HTTP: a real verifier (SQLite, and PostgreSQL), the page's calls as the login
page makes them, and the reference tax app (``appclient.confirm_scan``, what `cert-verifier
scan-confirm` runs) answering the QR code's text. Each refusal has its own code."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cert_agent.verifier import apps
from cert_agent.verifier.appclient import AppClientError, confirm_scan
from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import PERSONS
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.postgres import PostgresServer
from tests.harness.verifier import ORIGIN, Clock, Verifier, verifier_at

NOW = dt.datetime(2026, 3, 14, 2, 0, tzinfo=dt.UTC)
ID_NUMBER = {p["personId"]: p["idNumber"] for p in PERSONS}


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def verifier(
    request: pytest.FixtureRequest, fixtures: Fixtures, tmp_path: Path
) -> AsyncIterator[tuple[Verifier, str]]:
    """A verifier, and the credential of a tax app registered with it."""
    database = None
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres").new_database()
    async with verifier_at(fixtures, tmp_path, Clock(NOW), database=database) as v:
        registered = await apps.register(v.store, "青岛税务APP", NOW)
        yield v, registered.credential


def code(v: Verifier, shown: dict[str, Any]) -> str:
    """The QR code's text, its site pointed at this test verifier (the code names the public
    origin, which the test's verifier serves on a loopback port)."""
    return str(shown["qrText"]).replace(ORIGIN, v.url)


async def _scan_step(v: Verifier, person: str = "p-zhang", cert: str = "hairun-ec", kind: str = "enterprise") -> Any:
    status, chosen = await v.certificate_step(cert, kind)
    assert status == 200, chosen
    status, shown = await v.post("/api/login/scan", {"attemptId": chosen["attemptId"], "personId": person})
    assert status == 200, shown
    return chosen["attemptId"], shown


async def test_persons_are_offered_both_methods_and_one_without_a_phone_only_scan(
    verifier: tuple[Verifier, str],
) -> None:
    v, _ = verifier
    _, chosen = await v.certificate_step("lanhai-rsa")
    methods = {p["personId"]: p["methods"] for p in chosen["persons"]}
    assert methods == {"p-li": ["sms", "scan"], "p-zhou": ["scan"]}
    status, error = await v.post("/api/login/sms", {"attemptId": chosen["attemptId"], "personId": "p-zhou"})
    assert (status, error["error"]["code"]) == (409, "PHONE_MISSING")
    assert "扫码验证" in error["error"]["message"]


async def test_the_apps_confirmation_logs_the_waiting_page_in(verifier: tuple[Verifier, str]) -> None:
    v, credential = verifier
    attempt_id, shown = await _scan_step(v)
    assert shown["qrImage"].startswith("data:image/svg+xml") and shown["expiresIn"] == 120
    waiting = asyncio.create_task(v.post("/api/login/scan/wait", {"attemptId": attempt_id}))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # the long poll holds until the app answers
    answer = await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"])
    assert answer == {"confirmed": True, "person": "张*", "enterprise": TAXPAYERS["hairun"].name}
    status, logged_in = await asyncio.wait_for(waiting, 5)
    assert status == 200 and logged_in["enterprise"]["taxpayerId"] == TAXPAYERS["hairun"].taxpayer_id
    status, session = await v.get("/api/session")
    assert status == 200 and session["person"]["personId"] == "p-zhang"


async def test_agency_login_goes_on_to_the_client_choice_after_the_scan(verifier: tuple[Verifier, str]) -> None:
    v, credential = verifier
    attempt_id, shown = await _scan_step(v, "p-zhao", "xinda-ec", "agency")
    await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhao"])
    status, answer = await v.post("/api/login/scan/wait", {"attemptId": attempt_id})
    assert status == 200 and {c["taxpayerId"] for c in answer["clients"]} >= {TAXPAYERS["lanhai"].taxpayer_id}


async def test_each_refused_confirmation_has_its_own_code(verifier: tuple[Verifier, str]) -> None:
    v, credential = verifier
    # another person's face: refused, counted, and the page is told with the tries left
    attempt_id, shown = await _scan_step(v)
    with pytest.raises(AppClientError) as wrong:
        await confirm_scan(code(v, shown), credential, ID_NUMBER["p-wang"])
    assert wrong.value.code == "SCAN_WRONG_PERSON"
    status, error = await v.post("/api/login/scan/wait", {"attemptId": attempt_id})
    assert (status, error["error"]["code"], error["error"]["triesLeft"]) == (401, "SCAN_WRONG_PERSON", 4)
    # the same code again: answered once
    with pytest.raises(AppClientError) as replayed:
        await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"])
    assert replayed.value.code == "SCAN_REPLAYED"
    # a newer code on the same attempt makes the older one not current
    _, older = await v.post("/api/login/scan", {"attemptId": attempt_id, "personId": "p-zhang"})
    _, newer = await v.post("/api/login/scan", {"attemptId": attempt_id, "personId": "p-zhang"})
    with pytest.raises(AppClientError) as superseded:
        await confirm_scan(code(v, older), credential, ID_NUMBER["p-zhang"])
    assert superseded.value.code == "SCAN_NOT_CURRENT"
    # a cancelled attempt
    assert (await v.post("/api/login/cancel", {"attemptId": attempt_id}))[0] == 200
    with pytest.raises(AppClientError) as cancelled:
        await confirm_scan(code(v, newer), credential, ID_NUMBER["p-zhang"])
    assert cancelled.value.code == "SCAN_NOT_CURRENT"
    # an unregistered app, a revoked one, a made-up request, an expired code
    attempt_id, shown = await _scan_step(v)
    for bad in ("app-0123456789abcdef." + "A" * 43, "not a credential"):
        with pytest.raises(AppClientError) as unknown_app:
            await confirm_scan(code(v, shown), bad, ID_NUMBER["p-zhang"])
        assert (unknown_app.value.code, unknown_app.value.status) == ("APP_UNAUTHORIZED", 401)
    made_up = code(v, shown).rsplit("r=", 1)[0] + "r=" + "x" * 32
    with pytest.raises(AppClientError) as unknown:
        await confirm_scan(made_up, credential, ID_NUMBER["p-zhang"])
    assert unknown.value.code == "SCAN_UNKNOWN"
    v.clock.now = NOW + dt.timedelta(seconds=121)
    with pytest.raises(AppClientError) as expired:
        await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"])
    assert expired.value.code == "SCAN_EXPIRED"
    status, error = await v.post("/api/login/scan/wait", {"attemptId": attempt_id})
    assert (status, error["error"]["code"]) == (410, "SCAN_EXPIRED")


async def test_a_revoked_app_is_refused(verifier: tuple[Verifier, str]) -> None:
    v, credential = verifier
    _, shown = await _scan_step(v)
    assert await v.store.revoke_app(credential.split(".")[0])
    with pytest.raises(AppClientError) as revoked:
        await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"])
    assert revoked.value.code == "APP_UNAUTHORIZED"


async def test_another_attempts_confirmation_leaves_this_page_waiting(verifier: tuple[Verifier, str]) -> None:
    v, credential = verifier
    mine, _ = await _scan_step(v)
    _, theirs = await _scan_step(v)
    waiting = asyncio.create_task(v.login.wait_scan(mine, timeout=1.0))
    await confirm_scan(code(v, theirs), credential, ID_NUMBER["p-zhang"])
    assert await waiting == {"pending": True}  # their confirmation logged them in, not this page


async def test_five_failed_scans_in_a_day_lock_the_person_and_sms_counts_apart(
    verifier: tuple[Verifier, str],
) -> None:
    v, credential = verifier
    for left in (4, 3, 2, 1):
        attempt_id, shown = await _scan_step(v)
        with pytest.raises(AppClientError) as failed:
            await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"], face_verified=False)
        assert failed.value.code == "SCAN_FACE_FAILED"
        status, error = await v.post("/api/login/scan/wait", {"attemptId": attempt_id})
        assert (error["error"]["code"], error["error"]["triesLeft"]) == ("SCAN_FACE_FAILED", left)
    # four scan failures and four wrong SMS codes: neither method has failed five times
    _, chosen = await v.certificate_step("hairun-ec")
    await v.post("/api/login/sms", {"attemptId": chosen["attemptId"], "personId": "p-zhang"})
    for _ in range(4):
        status, error = await v.post("/api/login/verify", {"attemptId": chosen["attemptId"], "code": "000000"})
        assert error["error"]["code"] == "SMS_CODE_INCORRECT"
    attempt_id, shown = await _scan_step(v)  # the fifth scan failure locks
    with pytest.raises(AppClientError):
        await confirm_scan(code(v, shown), credential, ID_NUMBER["p-zhang"], face_verified=False)
    status, error = await v.post("/api/login/scan/wait", {"attemptId": attempt_id})
    assert (status, error["error"]["code"]) == (423, "ACCOUNT_LOCKED")


async def test_the_page_waits_on_one_instance_while_the_app_answers_at_the_other(
    fixtures: Fixtures, postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.new_database()
    async with (
        verifier_at(fixtures, tmp_path / "a", Clock(NOW), database=database) as a,
        verifier_at(fixtures, tmp_path / "b", Clock(NOW), database=database) as b,
    ):
        credential = (await apps.register(a.store, "青岛税务APP", NOW)).credential
        attempt_id, shown = await _scan_step(a)
        waiting = asyncio.create_task(a.post("/api/login/scan/wait", {"attemptId": attempt_id}))
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await confirm_scan(code(b, shown), credential, ID_NUMBER["p-zhang"])
        status, logged_in = await asyncio.wait_for(waiting, 5)
        assert status == 200 and "enterprise" in logged_in
        assert loop.time() - started < 1.0  # woken by NOTIFY, not by its 5 s re-read


async def test_a_bureau_that_offers_sms_only_offers_no_scan(verifier: tuple[Verifier, str]) -> None:
    v, _ = verifier
    v.login.factors = (v.login.factor("sms"),)  # scan_verification = false
    status, chosen = await v.certificate_step("lanhai-rsa")
    assert {p["personId"]: p["methods"] for p in chosen["persons"]} == {"p-li": ["sms"], "p-zhou": []}
    status, error = await v.post("/api/login/scan", {"attemptId": chosen["attemptId"], "personId": "p-li"})
    assert (status, error["error"]["code"], error["error"]["field"]) == (400, "BAD_REQUEST", "method")
