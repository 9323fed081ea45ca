"""A token pulled out while it is being used: every failure is a removal error, nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.models import Token
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures
from tests.paths import TESTS


def test_token_removed_while_signing_gives_removal_errors_and_the_rest_goes_on(fresh_fixtures: Fixtures) -> None:
    token = fresh_fixtures.token("ukey")
    worker = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "harness" / "removal_worker.py"),
            fresh_fixtures.module,
            token.label,
            fresh_fixtures.cert("hairun-ec").cert_id,
            token.pin,
        ],
        env=fresh_fixtures.env.environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    lines = [json.loads(worker.stdout.readline()) for _ in range(3)]  # signing works before removal
    assert all(line == {"ok": True} for line in lines)
    fresh_fixtures.env.pull_out(token.serial)  # pulled out mid-loop, possibly mid-call
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    results = [json.loads(line) for line in out.splitlines()]
    codes = {r["code"] for r in results if "code" in r}
    assert codes and codes <= {"DEVICE_REMOVED", "TOKEN_NOT_PRESENT"}, results
    assert results[-1] == {"remaining": len(fresh_fixtures.tokens) - 1}


def test_a_token_pulled_out_at_any_point_of_a_signature_is_reported_removed(fresh_fixtures: Fixtures) -> None:
    # Pulled out at a different moment each round: before the session opens (SoftHSM2 then
    # answers C_OpenSession with CKR_GENERAL_ERROR), at login, mid-search, mid-sign.
    token_fixture, cert_id = fresh_fixtures.token("ukey"), bytes.fromhex(fresh_fixtures.cert("hairun-ec").cert_id)
    driver = Pkcs11Driver([fresh_fixtures.module])
    first_errors: list[str] = []
    try:
        for round_number in range(15):
            token = driver.find_token(label=token_fixture.label)
            errors: list[str] = []
            signer = threading.Thread(
                target=_sign_until_it_fails, args=(driver, token, cert_id, token_fixture.pin, errors)
            )
            signer.start()
            time.sleep(0.03 + (round_number % 5) * 0.011)
            fresh_fixtures.env.pull_out(token_fixture.serial)
            signer.join(timeout=30)
            first_errors += errors
            fresh_fixtures.env.plug_in(token_fixture.serial)
            driver.rescan()
    finally:
        driver.close()
    assert len(first_errors) == 15
    assert all(error.startswith(("DEVICE_REMOVED", "TOKEN_NOT_PRESENT")) for error in first_errors), first_errors


def _sign_until_it_fails(driver: Pkcs11Driver, token: Token, cert_id: bytes, pin: str, errors: list[str]) -> None:
    while not errors:
        try:
            driver.sign(token, cert_id, Pin(pin), b"data", SignatureAlgorithm.ES256)
        except CertAgentError as exc:
            errors.append(exc.describe())
