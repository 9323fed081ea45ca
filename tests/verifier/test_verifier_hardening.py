"""What an attacker tried against the verifier, kept out: SMS floods, cross-site writes, missing
security headers, malformed bodies; and the faults a server meets: a locked or full database, a
process killed between the steps of a login. Real aiohttp servers, real SQLite files."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from softhsm_fixtures import Fixtures
from tests.harness.verifier import ORIGIN, PAGE_HEADERS, Clock, Verifier, VerifierProcess, make_auth_token, verifier_at

CROSS_SITE = "CROSS_SITE_REQUEST"


def sms_count(verifier: Verifier) -> int:
    return len(verifier.outbox.read_text(encoding="utf-8").splitlines()) if verifier.outbox.exists() else 0


# --- SMS sends --------------------------------------------------------------------------------


async def test_sms_resends_wait_the_interval_and_one_attempt_sends_at_most_three(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    send = {"attemptId": step["attemptId"], "personId": "p-zhang"}
    status, first = await verifier.post("/api/login/sms", send)
    assert status == 200 and first["resendIn"] == 60
    status, again = await verifier.post("/api/login/sms", send)
    assert status == 429 and again["error"]["code"] == "SMS_RATE_LIMITED"
    assert 55 <= again["error"]["retryAfter"] <= 60 and "秒后再试" in again["error"]["message"]
    for _ in range(2):
        verifier.clock.now += dt.timedelta(seconds=61)
        assert (await verifier.post("/api/login/sms", send))[0] == 200
    verifier.clock.now += dt.timedelta(seconds=61)
    status, fourth = await verifier.post("/api/login/sms", send)
    assert status == 429 and fourth["error"]["code"] == "SMS_RATE_LIMITED"
    assert sms_count(verifier) == 3


async def test_a_send_never_extends_the_login_attempt(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    verifier.clock.now += dt.timedelta(seconds=500)
    assert (await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"}))[0] == 200
    verifier.clock.now += dt.timedelta(seconds=101)  # 601 s after the attempt began: it is over
    status, body = await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
    assert status == 401 and body["error"]["code"] == "LOGIN_EXPIRED"


async def test_one_person_gets_at_most_five_codes_an_hour_across_logins(verifier: Verifier) -> None:
    statuses = []
    for _ in range(7):
        _, step = await verifier.certificate_step("hairun-ec")
        statuses.append(
            (await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"}))[0]
        )
        verifier.clock.now += dt.timedelta(seconds=61)
    assert statuses == [200] * 5 + [429] * 2
    verifier.clock.now += dt.timedelta(hours=1)
    _, step = await verifier.certificate_step("hairun-ec")
    assert (await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"}))[0] == 200


async def test_parallel_sends_for_one_attempt_text_the_person_once(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    send = {"attemptId": step["attemptId"], "personId": "p-zhang"}
    results = await asyncio.gather(*(verifier.post("/api/login/sms", send) for _ in range(30)))
    assert sorted(status for status, _ in results) == [200] + [429] * 29
    assert sms_count(verifier) == 1


# --- cross-site requests ------------------------------------------------------------------------


async def _logged_in(verifier: Verifier) -> None:
    _, step = await verifier.certificate_step("hairun-ec")
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    status, _ = await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()})
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "text/plain", "Origin": ORIGIN}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "application/json", "Origin": "https://evil.example.com"}, 403, CROSS_SITE),
        ({"Content-Type": "application/json", "Origin": "https://etax.example.com:8443"}, 403, CROSS_SITE),
        ({"Content-Type": "application/json", "Origin": "null"}, 403, CROSS_SITE),
        (
            {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site", "Origin": ORIGIN},
            403,
            "CROSS_SITE_REQUEST",
        ),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403, CROSS_SITE),
        ({"Content-Type": "application/json"}, 403, CROSS_SITE),
    ],
)
async def test_a_write_that_is_not_same_origin_json_is_refused_and_changes_nothing(
    verifier: Verifier, headers: dict[str, str], status: int, code: str
) -> None:
    await _logged_in(verifier)
    _, history = await verifier.get("/api/history")
    entry = history["entries"][0]["id"]
    attempts = [
        (f"/api/history/{entry}/hide", b"{}"),
        ("/api/logout", b"{}"),
        ("/api/login/verify", b'{"attemptId": "x", "code": "123456"}'),
        ("/api/challenge", b"{}"),
    ]
    async with aiohttp.ClientSession(cookie_jar=verifier.session.cookie_jar) as bare:  # no default Origin
        for path, body in attempts:
            async with bare.post(verifier.url + path, data=body, headers=headers) as response:
                answer = await response.json()
                assert (response.status, answer["error"]["code"]) == (status, code), path
    _, after = await verifier.get("/api/history")
    assert [e["id"] for e in after["entries"]] == [e["id"] for e in history["entries"]]  # nothing hidden
    assert (await verifier.get("/api/session"))[0] == 200  # still logged in


async def test_same_origin_fetch_metadata_without_origin_is_accepted(verifier: Verifier) -> None:
    async with (
        aiohttp.ClientSession() as bare,
        bare.post(verifier.url + "/api/challenge", json={}, headers={"Sec-Fetch-Site": "same-origin"}) as response,
    ):
        assert response.status == 200


# --- headers --------------------------------------------------------------------------------------


async def test_every_answer_carries_the_security_headers_and_no_server_banner(verifier: Verifier) -> None:
    paths = ["/", "/home", "/account/certificate", "/static/pages/login.js", "/static/cert-agent.js", "/api/session"]
    async with aiohttp.ClientSession(headers=PAGE_HEADERS) as session:
        for path in [*paths, "/api/nothing", "/no-such-page"]:
            async with session.get(verifier.url + path) as response:
                headers = response.headers
                assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
                assert "script-src 'self'" in headers["Content-Security-Policy"]
                assert headers["X-Frame-Options"] == "DENY"
                assert headers["X-Content-Type-Options"] == "nosniff"
                assert headers["Referrer-Policy"] == "no-referrer"
                assert headers["Server"] == "cert-verifier"
                if path.startswith("/api/"):
                    assert headers["Cache-Control"] == "no-store"


async def test_personal_answers_are_never_cached(verifier: Verifier) -> None:
    await _logged_in(verifier)
    for path in ("/api/session", "/api/history"):
        async with verifier.session.get(verifier.url + path) as response:
            assert response.status == 200 and response.headers["Cache-Control"] == "no-store"


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"attemptId": "\\ud800", "personId": "p-zhang"}',
        b'{"attemptId": "a", "personId": "\\udfff"}',
        b'{"attemptId": ' + b"9" * 5000 + b', "personId": "p"}',
        b'{"\\ud800": 1}',
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe{}",
    ],
)
async def test_bodies_that_are_not_plain_json_are_400_bad_json(verifier: Verifier, body: bytes) -> None:
    async with verifier.session.post(
        verifier.url + "/api/login/sms", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400 and (await response.json())["error"]["code"] == "BAD_JSON"


async def test_junk_session_cookies_and_entry_ids_are_refused_cleanly(verifier: Verifier) -> None:
    await _logged_in(verifier)
    status, body = await verifier.post("/api/history/" + "9" * 40 + "/hide")
    assert (status, body["error"]["code"]) == (400, "BAD_REQUEST")
    async with aiohttp.ClientSession() as bare:
        for cookie in ("x" * 5000, "a b", "\u4e2d\u6587"):
            async with bare.get(verifier.url + "/api/session", headers={"Cookie": f"etax_session={cookie}"}) as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "NOT_LOGGED_IN"


# --- database faults ------------------------------------------------------------------------------


async def test_a_database_locked_by_another_process_is_503_and_the_service_recovers(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    async with verifier_at(fixtures, tmp_path, Clock(dt.datetime.now(dt.UTC))) as verifier:
        holder = subprocess.Popen(  # another process holds the write lock, as a stuck backup job would
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(60)\n",
                str(verifier.sqlite_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            status, body = await verifier.post("/api/challenge")  # waits out busy_timeout (5 s), then says so
            assert (status, body["error"]["code"]) == (503, "STORE_UNAVAILABLE")
        finally:
            holder.kill()
            holder.wait()
        assert (await verifier.post("/api/challenge"))[0] == 200


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"a 4 MiB tmpfs cannot be mounted here (needs root and mount rights): {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_is_503_loses_nothing_and_the_service_recovers(fixtures: Fixtures, tiny_disk: Path) -> None:
    async with verifier_at(fixtures, tiny_disk, Clock(dt.datetime.now(dt.UTC))) as verifier:
        await _logged_in(verifier)
        filler = tiny_disk / "filler"
        with filler.open("wb", buffering=0) as out:  # take every byte left
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError:
                pass
        codes = []
        for _ in range(300):
            status, body = await verifier.post("/api/challenge")
            codes.append(body["error"]["code"] if status != 200 else "OK")
            assert status in (200, 503), body
            if status == 503:
                break
        assert codes[-1] == "STORE_UNAVAILABLE"
        assert (await verifier.get("/api/session"))[0] == 200  # reads still work, the session is intact
        filler.unlink()
        assert (await verifier.post("/api/challenge"))[0] == 200
        with sqlite3.connect(verifier.sqlite_file) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- killed between the steps of a login --------------------------------------------------------


async def test_killed_between_every_step_of_a_login_the_state_survives(fixtures: Fixtures, tmp_path: Path) -> None:
    server = VerifierProcess(fixtures, tmp_path)
    jar = aiohttp.CookieJar(unsafe=True)
    headers = {"Origin": server.origin}

    async def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession(cookie_jar=jar, headers=headers) as session,
            session.post(f"{server.origin}{path}", json=body) as response,
        ):
            return response.status, await response.json()

    async def get(path: str) -> int:
        async with aiohttp.ClientSession(cookie_jar=jar) as session, session.get(f"{server.origin}{path}") as r:
            return r.status

    stderr = ""
    server.start()
    try:
        _, challenge = await post("/api/challenge", {})
        stderr += server.kill()
        server.start()
        token = make_auth_token(fixtures, "hairun-ec", server.origin, challenge["nonce"])
        status, step = await post(
            "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
        )
        assert status == 200, step
        stderr += server.kill()
        server.start()
        replay = await post(
            "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
        )
        assert replay[1]["error"]["code"] == "CHALLENGE_INVALID"  # consumed before the kill, still consumed
        assert (await post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"}))[0] == 200
        stderr += server.kill()
        server.start()
        status, body = await post("/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
        assert body["error"]["triesLeft"] == 4
        stderr += server.kill()
        server.start()
        status, body = await post("/api/login/verify", {"attemptId": step["attemptId"], "code": server.last_code()})
        assert status == 200, body
        stderr += server.kill()
        server.start()
        assert await get("/api/session") == 200
        status, body = await post("/api/login/verify", {"attemptId": step["attemptId"], "code": server.last_code()})
        assert body["error"]["code"] == "LOGIN_EXPIRED"  # the attempt ended with the session, for good
    finally:
        stderr += server.kill()
    assert "Traceback" not in stderr
    with sqlite3.connect(tmp_path / "v.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        events = [row[0] for row in db.execute("SELECT event FROM audit ORDER BY entry_id")]
    assert events == ["sms_sent", "login_failed", "login_enterprise"]


# --- operations -------------------------------------------------------------------------------------


async def test_health_says_ok_and_turns_503_when_the_crl_is_stale(verifier: Verifier) -> None:
    async with aiohttp.ClientSession() as bare, bare.get(verifier.url + "/api/health") as response:
        assert response.status == 200
        health = await response.json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["crls"] and all(crl["fresh"] for crl in health["crls"])
    verifier.clock.now += dt.timedelta(days=3650)  # long past the CRL's nextUpdate
    async with aiohttp.ClientSession() as bare, bare.get(verifier.url + "/api/health") as response:
        assert response.status == 503
        stale = await response.json()
    assert stale["status"] == "degraded" and not stale["crls"][0]["fresh"]
