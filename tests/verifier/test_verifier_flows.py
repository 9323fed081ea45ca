"""Certificate login and agency certificate login through the verifier's HTTP API: a real aiohttp
server on each store (a real SQLite file, a real PostgreSQL server), tokens signed on SoftHSM2,
SMS codes read from the outbox."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from yarl import URL

from cert_agent.verifier.login import cst_day
from cert_agent.verifier.store import SmsLimit, SmsLimits, SqlStore
from softhsm_fixtures import Fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.postgres import PostgresServer
from tests.harness.verifier import ORIGIN, Clock, Verifier, make_auth_token, row_counts, verifier_at


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def verifier(request: pytest.FixtureRequest, fixtures: Fixtures, tmp_path: Path) -> AsyncIterator[Verifier]:
    """Every flow on both stores: the same behaviour is the store's contract."""
    database = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        database = server.new_database()
    async with verifier_at(fixtures, tmp_path, Clock(dt.datetime.now(dt.UTC)), database=database) as running:
        yield running


# --- enterprise certificate login ---------------------------------------------------------------


async def test_enterprise_login_runs_certificate_person_sms_to_a_session(verifier: Verifier) -> None:
    status, step = await verifier.certificate_step("hairun-ec")
    assert status == 200, step
    assert step["enterprise"] == {"taxpayerId": TAXPAYERS["hairun"].taxpayer_id, "name": "青岛海润贸易有限公司"}
    persons = {p["personId"]: p for p in step["persons"]}
    assert persons["p-zhang"]["name"] == "张*" and persons["p-zhang"]["phone"] == "138****0001"
    assert persons["p-wang"]["name"] == "王*英" and persons["p-wang"]["roles"] == ["财务负责人", "办税员"]

    status, sent = await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-wang"})
    assert status == 200 and sent["sentTo"] == "138****0002"
    async with verifier.session.post(
        verifier.url + "/api/login/verify", json={"attemptId": step["attemptId"], "code": verifier.last_code()}
    ) as response:
        assert response.status == 200
        cookie = response.headers["Set-Cookie"]
        body = await response.json()
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert body["person"]["name"] == "王秀英" and body["agency"] is None
    status, me = await verifier.get("/api/session")
    assert status == 200 and me["enterprise"]["name"] == "青岛海润贸易有限公司"


async def test_a_person_with_several_phones_may_get_the_code_on_any_and_the_limits_hold_per_number(
    verifier: Verifier,
) -> None:
    status, step = await verifier.certificate_step("hairun-ec")
    wang = next(p for p in step["persons"] if p["personId"] == "p-wang")
    assert wang["phones"] == ["138****0002", "139****0012"] and wang["phone"] == "138****0002"  # the default first
    attempt = {"attemptId": step["attemptId"], "personId": "p-wang"}
    status, sent = await verifier.post("/api/login/sms", {**attempt, "phoneIndex": 1})
    assert status == 200 and sent["sentTo"] == "139****0012"
    last = json.loads(verifier.outbox.read_text(encoding="utf-8").splitlines()[-1])
    assert last["phone"] == "13900000012"
    status, error = await verifier.post("/api/login/sms", {**attempt, "phoneIndex": 2})
    assert (status, error["error"]["code"], error["error"]["field"]) == (400, "BAD_REQUEST", "phoneIndex")
    status, error = await verifier.post("/api/login/sms", {**attempt, "phoneIndex": 0})
    assert (status, error["error"]["code"]) == (429, "SMS_RATE_LIMITED")  # the wait is per person too
    status, _ = await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()})
    assert status == 200


async def test_replayed_expired_and_foreign_nonces_are_refused(verifier: Verifier) -> None:
    _, challenge = await verifier.post("/api/challenge")
    token = make_auth_token(verifier.fixtures, "hairun-ec", ORIGIN, challenge["nonce"])
    body = {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
    assert (await verifier.post("/api/login/certificate", body))[0] == 200
    status, replay = await verifier.post("/api/login/certificate", body)
    assert status == 401 and replay["error"]["code"] == "CHALLENGE_INVALID"

    _, challenge = await verifier.post("/api/challenge")
    verifier.clock.now += dt.timedelta(minutes=6)
    token = make_auth_token(verifier.fixtures, "hairun-ec", ORIGIN, challenge["nonce"])
    status, late = await verifier.post(
        "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
    )
    assert status == 401 and late["error"]["code"] == "CHALLENGE_INVALID"

    foreign = "A" * 44  # never issued by this verifier
    token = make_auth_token(verifier.fixtures, "hairun-ec", ORIGIN, foreign)
    status, error = await verifier.post(
        "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": foreign}
    )
    assert status == 401 and error["error"]["code"] == "CHALLENGE_INVALID"


async def test_token_for_another_origin_is_refused(verifier: Verifier) -> None:
    _, challenge = await verifier.post("/api/challenge")
    token = make_auth_token(verifier.fixtures, "hairun-ec", "https://evil.test", challenge["nonce"])
    status, body = await verifier.post(
        "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
    )
    assert status == 401 and body["error"]["code"] == "SIGNATURE_INVALID"


@pytest.mark.parametrize(
    ("cert_name", "code"),
    [
        ("expired", "CERT_EXPIRED"),
        ("revoked", "CERT_REVOKED"),
        ("untrusted", "CERT_UNTRUSTED"),
        ("bad-check-character", "TAXPAYER_ID_INVALID"),
    ],
)
async def test_unusable_certificates_cannot_log_in(verifier: Verifier, cert_name: str, code: str) -> None:
    status, body = await verifier.certificate_step(cert_name)
    assert status in (401, 403) and body["error"]["code"] == code
    assert body["error"]["message"]  # Chinese text for the page


# --- agency certificate login --------------------------------------------------------------------


async def _through_sms(verifier: Verifier, step: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    person = step["persons"][0]["personId"]
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": person})
    return await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()})


async def test_agency_login_chooses_among_clients_with_an_active_agreement(verifier: Verifier) -> None:
    status, step = await verifier.certificate_step("xinda-ec", kind="agency")
    assert status == 200, step
    status, choice = await _through_sms(verifier, step)
    assert status == 200
    names = {c["name"] for c in choice["clients"]}
    assert names == {"青岛海润贸易有限公司", "青岛蓝海制造有限公司"}  # 双正物流's agreement is terminated
    refused_status, refused = await verifier.post(
        "/api/login/client", {"attemptId": step["attemptId"], "clientId": TAXPAYERS["shuangzheng"].taxpayer_id}
    )
    assert refused_status == 403 and refused["error"]["message"] == "未查询到您与该企业的关联关系信息"
    status, session = await verifier.post(
        "/api/login/client", {"attemptId": step["attemptId"], "clientId": TAXPAYERS["lanhai"].taxpayer_id}
    )
    assert status == 200
    assert session["agency"]["name"] == "青岛信达财税代理有限公司"
    assert session["enterprise"]["name"] == "青岛蓝海制造有限公司" and session["person"]["personId"] == "p-zhao"


async def test_a_code_cannot_be_sent_again_once_the_agency_is_choosing_its_client(verifier: Verifier) -> None:
    status, step = await verifier.certificate_step("xinda-ec", kind="agency")
    assert status == 200, step
    assert (await _through_sms(verifier, step))[0] == 200
    person = step["persons"][0]["personId"]
    resend_status, resend = await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": person})
    assert resend["error"]["code"] == "LOGIN_EXPIRED", (resend_status, resend)
    status, session = await verifier.post(
        "/api/login/client", {"attemptId": step["attemptId"], "clientId": TAXPAYERS["lanhai"].taxpayer_id}
    )
    assert status == 200 and session["enterprise"]["name"] == "青岛蓝海制造有限公司"  # still choosing the client


async def test_agency_without_agreements_is_told_there_is_no_relationship(verifier: Verifier) -> None:
    status, step = await verifier.certificate_step("hengxin-ec", kind="agency")
    assert status == 200
    status, body = await _through_sms(verifier, step)
    assert status == 403 and body["error"]["code"] == "NO_RELATIONSHIP"
    assert body["error"]["message"] == "未查询到您与该企业的关联关系信息"


async def test_enterprise_certificate_in_the_agent_tab_is_refused(verifier: Verifier) -> None:
    status, body = await verifier.certificate_step("hairun-ec", kind="agency")
    assert status == 403 and body["error"]["code"] == "NOT_AN_AGENCY"


# --- lockout -----------------------------------------------------------------------------------


async def test_five_wrong_codes_lock_until_cst_midnight_and_a_new_day_unlocks(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    late_evening = dt.datetime(2026, 11, 28, 15, 30, tzinfo=dt.UTC)  # 23:30 CST
    async with verifier_at(fixtures, tmp_path, Clock(late_evening)) as verifier:
        _, step = await verifier.certificate_step("hairun-ec")
        await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
        codes = []
        for _ in range(5):
            status, body = await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
            codes.append((status, body["error"]["code"], body["error"].get("triesLeft")))
        assert codes[:4] == [(401, "SMS_CODE_INCORRECT", n) for n in (4, 3, 2, 1)]
        assert codes[4][:2] == (423, "ACCOUNT_LOCKED")
        status, locked = await verifier.post(
            "/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()}
        )
        assert status == 423 and locked["error"]["until"] == "2026-11-29T00:00:00+08:00"
        assert "2026-11-29 00:00" in locked["error"]["message"]

        verifier.clock.now = dt.datetime(2026, 11, 28, 16, 0, 1, tzinfo=dt.UTC)  # 00:00:01 CST next day
        _, step = await verifier.certificate_step("hairun-ec")
        await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
        status, _ = await verifier.post(
            "/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()}
        )
        assert status == 200


async def test_a_success_resets_the_failure_count(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    for _ in range(4):
        await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
    assert (await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()}))[
        0
    ] == 200
    assert await verifier.store.failures_by_method("p-zhang", cst_day(verifier.clock.now)) == {}  # reset
    verifier.clock.now += dt.timedelta(seconds=61)  # the next login, past the SMS resend interval
    _, step = await verifier.certificate_step("hairun-ec")
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    status, body = await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
    assert status == 401 and body["error"]["triesLeft"] == 4


# --- persistence and audit ---------------------------------------------------------------------


async def test_counters_sessions_and_audit_survive_a_restart(fixtures: Fixtures, tmp_path: Path) -> None:
    clock = Clock(dt.datetime.now(dt.UTC))
    async with verifier_at(fixtures, tmp_path, clock) as first:
        _, step = await first.certificate_step("hairun-ec")
        await first.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
        await first.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
        await first.post("/api/login/verify", {"attemptId": step["attemptId"], "code": first.last_code()})
        cookies = first.session.cookie_jar.filter_cookies(URL(first.url))
        session_id = cookies["etax_session"].value
        clock.now += dt.timedelta(seconds=61)  # the next login, past the SMS resend interval
        _, step = await first.certificate_step("hairun-ec")
        await first.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
        await first.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
    async with verifier_at(fixtures, tmp_path, clock) as second:
        second.session.cookie_jar.update_cookies({"etax_session": session_id})
        status, me = await second.get("/api/session")
        assert status == 200 and me["person"]["personId"] == "p-zhang"
        status, body = await second.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
        assert body["error"]["triesLeft"] == 3  # the failure before the restart still counts
        status, history = await second.get("/api/history")
        events = [e["event"] for e in history["entries"]]
        assert "login_enterprise" in events and events.count("login_failed") >= 2


async def test_hidden_history_entries_leave_the_history_but_stay_in_the_audit(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()})
    _, history = await verifier.get("/api/history")
    first = history["entries"][0]["id"]
    status, _ = await verifier.post(f"/api/history/{first}/hide")
    assert status == 200
    _, after = await verifier.get("/api/history")
    assert first not in [e["id"] for e in after["entries"]]
    assert first in [e.entry_id for e in await verifier.store.history("p-zhang", include_hidden=True)]
    status, missing = await verifier.post("/api/history/999999/hide")
    assert status == 404 and missing["error"]["code"] == "NOT_FOUND"


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data", "status", "code"),
    [
        ("/api/login/certificate", b"{not json", 400, "BAD_JSON"),
        ("/api/login/certificate", b"[1]", 400, "BAD_JSON"),
        ("/api/login/certificate", b'{"kind": "enterprise", "nonce": "x"}', 400, "BAD_REQUEST"),
        ("/api/login/certificate", b'{"kind": "boss", "nonce": "x", "authToken": {}}', 400, "BAD_REQUEST"),
        ("/api/login/certificate", b'{"kind": "enterprise", "nonce": 5, "authToken": {}}', 400, "BAD_REQUEST"),
        ("/api/login/sms", b'{"attemptId": "nope", "personId": "p-zhang"}', 401, "LOGIN_EXPIRED"),
        ("/api/login/verify", b'{"attemptId": "nope", "code": ["1"]}', 400, "BAD_REQUEST"),
        ("/api/login/client", b"{}", 400, "BAD_REQUEST"),
        ("/api/logout", b"", 401, "NOT_LOGGED_IN"),
        ("/api/nothing-here", b"{}", 404, "NOT_FOUND"),
        ("/api/login/certificate", b'{"x": "' + b"a" * 40000 + b'"}', 413, "BODY_TOO_LARGE"),
    ],
)
async def test_bad_input_gets_a_4xx_with_a_stable_code_and_writes_nothing(
    verifier: Verifier, path: str, data: bytes, status: int, code: str
) -> None:
    before = await verifier.store.history("p-zhang", include_hidden=True)
    async with verifier.session.post(
        verifier.url + path, data=data, headers={"Content-Type": "application/json"}
    ) as response:
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (status, code)
    assert await verifier.store.history("p-zhang", include_hidden=True) == before
    assert (await verifier.post("/api/challenge"))[0] == 200  # and the service goes on


# --- bounded growth -------------------------------------------------------------------------------


async def test_the_tables_stop_growing_under_a_steady_login_load(verifier: Verifier) -> None:
    """A login every 10 minutes of (simulated) time for 8 hours, every third abandoned after
    the certificate step, an unused challenge each time, the purge running hourly as the service
    schedules it: challenges, attempts, sessions, SMS sends and failure counts stay bounded; only
    the audit log grows. (The per-phone limit is set to an hour here, so that an hour of sends
    is all the purge must keep.)"""
    verifier.login.factor("sms").limits = SmsLimits(per_phone=SmsLimit(10, 3600))  # type: ignore[attr-defined]
    store = verifier.login.store
    assert isinstance(store, SqlStore)  # the one implementation, on either database
    counts: list[dict[str, int]] = []
    for tick in range(48):
        verifier.clock.now += dt.timedelta(minutes=10)
        verifier.session.cookie_jar.clear()
        _, step = await verifier.certificate_step("hairun-ec")
        await verifier.post("/api/challenge")  # a challenge that is never used
        if tick % 3:
            person = ["p-zhang", "p-wang"][tick % 2]
            assert (await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": person}))[
                0
            ] == 200
            code = {"attemptId": step["attemptId"], "code": verifier.last_code()}
            assert (await verifier.post("/api/login/verify", code))[0] == 200
        if tick % 6 == 5:
            await verifier.login.purge()
            counts.append(await row_counts(store))
    for table in ("challenges", "login_attempts", "sessions", "sms_sends", "failures"):
        assert max(c[table] for c in counts[1:]) == max(c[table] for c in counts[:2]), (table, counts)
    assert counts[-1]["audit"] > 3 * counts[1]["audit"]  # the audit log is kept
