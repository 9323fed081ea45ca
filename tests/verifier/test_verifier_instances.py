"""Several verifier instances on one PostgreSQL behave as one service: real `cert-verifier
serve` processes behind one public origin (as behind a load balancer), a real PostgreSQL
server, tokens signed on SoftHSM2."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from softhsm_fixtures import Fixtures
from tests.harness.postgres import PostgresServer
from tests.harness.verifier import ORIGIN, VerifierProcess, make_auth_token

Instances = tuple[VerifierProcess, VerifierProcess]


@pytest.fixture
def instances(fixtures: Fixtures, postgres: PostgresServer, tmp_path: Path) -> Iterator[Instances]:
    database = postgres.new_database()
    pair = (
        VerifierProcess(fixtures, tmp_path / "a", database=database, origin=ORIGIN),
        VerifierProcess(fixtures, tmp_path / "b", database=database, origin=ORIGIN),
    )
    for instance in pair:
        instance.start()
    try:
        yield pair
    finally:
        for instance in pair:
            instance.stop()


class Browser:
    """One user's browser: one cookie jar, whichever instance the load balancer picks."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, at: VerifierProcess, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.session.post(at.url + path, json=body or {}) as response:
            return response.status, await response.json()

    async def get(self, at: VerifierProcess, path: str) -> tuple[int, Any]:
        async with self.session.get(at.url + path) as response:
            return response.status, await response.json()


@pytest.fixture
async def browser() -> Any:
    jar = aiohttp.CookieJar(unsafe=True)  # one jar for both instances' hosts, as behind one origin
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": ORIGIN}) as session:
        yield Browser(session)


async def certificate_step(
    fixtures: Fixtures, browser: Browser, first: VerifierProcess, second: VerifierProcess
) -> Any:
    _, challenge = await browser.post(first, "/api/challenge")
    token = make_auth_token(fixtures, "hairun-ec", ORIGIN, challenge["nonce"])
    body = {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
    status, step = await browser.post(second, "/api/login/certificate", body)
    assert status == 200, step
    return step, body


async def test_a_challenge_issued_by_one_instance_is_consumed_once_at_the_other(
    fixtures: Fixtures, instances: Instances, browser: Browser
) -> None:
    a, b = instances
    _, replay = await certificate_step(fixtures, browser, a, b)
    for instance in (a, b):
        status, body = await browser.post(instance, "/api/login/certificate", replay)
        assert (status, body["error"]["code"]) == (401, "CHALLENGE_INVALID")


async def test_parallel_wrong_codes_at_both_instances_are_never_more_than_five_guesses(
    fixtures: Fixtures, instances: Instances, browser: Browser
) -> None:
    a, b = instances
    step, _ = await certificate_step(fixtures, browser, a, b)
    assert (await browser.post(a, "/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"}))[0] == 200
    right = a.last_code()
    wrong = "000000" if right != "000000" else "111111"
    guess = {"attemptId": step["attemptId"], "code": wrong}
    answers = await asyncio.gather(*(browser.post(instances[i % 2], "/api/login/verify", guess) for i in range(24)))
    codes = [body["error"]["code"] for _, body in answers]
    assert codes.count("SMS_CODE_INCORRECT") == 4  # guesses 1-4; the fifth wrong guess locks
    assert codes.count("ACCOUNT_LOCKED") == 20
    status, body = await browser.post(b, "/api/login/verify", {"attemptId": step["attemptId"], "code": right})
    assert (status, body["error"]["code"]) == (423, "ACCOUNT_LOCKED")  # locked today, even with the right code


async def test_a_session_made_on_one_instance_is_valid_on_the_other_and_ends_there(
    fixtures: Fixtures, instances: Instances, browser: Browser
) -> None:
    a, b = instances
    step, _ = await certificate_step(fixtures, browser, a, a)
    await browser.post(a, "/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    status, _ = await browser.post(b, "/api/login/verify", {"attemptId": step["attemptId"], "code": a.last_code()})
    assert status == 200
    assert (await browser.get(a, "/api/session"))[0] == 200
    assert (await browser.get(b, "/api/session"))[0] == 200
    cookies = [c for c in browser.session.cookie_jar if c.key == "etax_session"]
    assert (await browser.post(b, "/api/logout"))[0] == 200
    for cookie in cookies:  # the ended session's cookie, replayed at the instance that made it
        browser.session.cookie_jar.update_cookies({cookie.key: cookie.value})
    status, body = await browser.get(a, "/api/session")
    assert (status, body["error"]["code"]) == (401, "NOT_LOGGED_IN")

    status, _ = await browser.get(b, "/api/history")  # logged out: log in again to read it
    assert status == 401
    step, _ = await certificate_step(fixtures, browser, b, a)
    # a second code for the same person waits out the resend interval; another person has none
    await browser.post(b, "/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-wang"})
    await browser.post(a, "/api/login/verify", {"attemptId": step["attemptId"], "code": b.last_code()})
    _, mine = await browser.get(a, "/api/history")
    assert [e["event"] for e in mine["entries"]] == ["sms_sent", "login_enterprise"]


async def test_the_audit_log_holds_both_instances_events_in_order(
    fixtures: Fixtures, instances: Instances, browser: Browser
) -> None:
    a, b = instances
    step, _ = await certificate_step(fixtures, browser, a, b)
    await browser.post(a, "/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    await browser.post(b, "/api/login/verify", {"attemptId": step["attemptId"], "code": "000000"})
    await browser.post(a, "/api/login/verify", {"attemptId": step["attemptId"], "code": a.last_code()})
    status, history = await browser.get(b, "/api/history")
    assert status == 200
    events = [(e["event"], e["at"]) for e in history["entries"]]
    assert [e for e, _ in events] == ["sms_sent", "login_failed", "login_enterprise"]
    assert [at for _, at in events] == sorted(at for _, at in events)
    ids = [e["id"] for e in history["entries"]]
    assert ids == sorted(ids)
