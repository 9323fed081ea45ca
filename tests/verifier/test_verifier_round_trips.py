"""How many times a certificate login waits for PostgreSQL: each round trip wakes a backend
process and costs the verifier far more than the statement (docs/performance.md, issue 23), so
the count per login step is kept from growing back. Counted by a TCP proxy between the verifier
and a real PostgreSQL server (tests/harness/round_trips.py), not by the store's own code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from softhsm_fixtures import Fixtures
from softhsm_fixtures.verifier_service import NO_SMS_LIMITS
from tests.harness.postgres import PostgresServer
from tests.harness.round_trips import RoundTrips, counting_proxy
from tests.harness.verifier import ORIGIN, Clock, Verifier, make_auth_token, verifier_at

# the most round trips each step of an SMS certificate login (企业业务) may take
MOST = {"challenge": 1, "certificate": 3, "sms": 3, "verify": 4}
WARM_UP = 6  # logins before counting: the pool's connection opened, statements prepared


async def counted_login(verifier: Verifier, trips: RoundTrips) -> dict[str, int]:
    counts: dict[str, int] = {}
    before = trips.count
    status, challenge = await verifier.post("/api/challenge")
    counts["challenge"], before = trips.count - before, trips.count
    assert status == 200, challenge
    token = make_auth_token(verifier.fixtures, "hairun-ec", ORIGIN, challenge["nonce"])
    body = {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
    status, step = await verifier.post("/api/login/certificate", body)
    counts["certificate"], before = trips.count - before, trips.count
    assert status == 200, step
    status, sent = await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
    counts["sms"], before = trips.count - before, trips.count
    assert status == 200, sent
    status, done = await verifier.post(
        "/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()}
    )
    counts["verify"] = trips.count - before
    assert status == 200 and done["person"]["personId"] == "p-zhang", done
    return counts


async def test_an_sms_certificate_login_waits_for_postgresql_no_more_than_counted(
    fixtures: Fixtures, postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.new_database()
    async with counting_proxy("127.0.0.1", postgres.port) as trips:
        url = database.replace(f":{postgres.port}/", f":{trips.port}/")
        clock = Clock(dt.datetime.now(dt.UTC))
        async with verifier_at(fixtures, tmp_path, clock, database=url, sms_limits=NO_SMS_LIMITS) as verifier:
            for _ in range(WARM_UP):
                await counted_login(verifier, trips)
            counted = [await counted_login(verifier, trips) for _ in range(3)]
    assert counted[0] == counted[1] == counted[2], counted  # steady: nothing left to warm up
    over = {step: n for step, n in counted[0].items() if n > MOST[step]}
    assert not over, f"round trips per step {counted[0]} (at most {MOST}); total {sum(counted[0].values())}"
