"""The verifier, in one run:

1. validating a token with warm caches (the certification path and CRL status cached) against
   one raw signature verification of the same token with pyca/cryptography: ratio of the
   medians (goal <= 2x);
2. whole logins per second through the HTTP API (challenge, token, person, SMS code, session),
   the token signed on SoftHSM2 each time, one client and ten clients at once.

    python bench/bench_verifier.py
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import auth_token, signed_data
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from cert_agent.verifier.app import create_app
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.verifier_service import NO_SMS_LIMITS, OUTBOX, seeded_login_service
from tests.harness.agent import free_port

ORIGIN = "https://etax.example.com"


class Signer:
    def __init__(self, fixtures: Fixtures) -> None:
        self.driver = Pkcs11Driver([fixtures.module])
        self.token = self.driver.find_token(label=fixtures.token("ukey").label)
        self.cert_id = bytes.fromhex(fixtures.cert("hairun-ec").cert_id)
        self.der_b64 = base64.b64encode(fixtures.certificate("hairun-ec").public_bytes(Encoding.DER)).decode()

    def token_for(self, nonce: str) -> dict[str, Any]:
        algorithm = SignatureAlgorithm.ES256
        signature = self.driver.sign(
            self.token, self.cert_id, Pin("112233"), signed_data(ORIGIN, nonce, algorithm), algorithm
        )
        return auth_token(self.der_b64, algorithm, signature)


async def validation_ratio(fixtures: Fixtures, signer: Signer, rounds: int) -> tuple[float, float]:
    settings = ValidatorSettings.from_files(ORIGIN, [fixtures.root_ca], [fixtures.issuing_ca], [fixtures.crl])
    validator = AuthTokenValidator(settings)
    nonce = base64.b64encode(os.urandom(32)).decode()
    token = signer.token_for(nonce)
    await validator.validate(token, nonce)  # warm the path cache
    public_key = fixtures.certificate("hairun-ec").public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    data = hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(nonce.encode()).digest()
    validations, raws = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        await validator.validate(token, nonce)
        validations.append(time.perf_counter() - start)
        start = time.perf_counter()
        signature = base64.b64decode(token["signature"])
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        raws.append(time.perf_counter() - start)
    return statistics.median(validations), statistics.median(raws)


async def logins_per_second(url: str, outbox: Path, signer: Signer, count: int, clients: int) -> float:
    lock = asyncio.Lock()

    async def one_login(session: aiohttp.ClientSession) -> None:
        async with session.post(url + "/api/challenge", json={}) as r:
            nonce = (await r.json())["nonce"]
        token = signer.token_for(nonce)
        async with session.post(
            url + "/api/login/certificate", json={"kind": "enterprise", "authToken": token, "nonce": nonce}
        ) as r:
            attempt = (await r.json())["attemptId"]
        async with lock:  # the outbox's last line must be this login's code
            async with session.post(url + "/api/login/sms", json={"attemptId": attempt, "personId": "p-zhang"}) as r:
                assert r.status == 200
            code = json.loads(outbox.read_text(encoding="utf-8").splitlines()[-1])["code"]
        async with session.post(url + "/api/login/verify", json={"attemptId": attempt, "code": code}) as r:
            assert r.status == 200, await r.text()

    async def client(n: int) -> None:
        async with aiohttp.ClientSession(headers={"Origin": ORIGIN}) as session:
            for _ in range(n):
                await one_login(session)

    start = time.perf_counter()
    await asyncio.gather(*(client(count // clients) for _ in range(clients)))
    return count / (time.perf_counter() - start)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixtures = build_fixtures(root / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        signer = Signer(fixtures)
        validate_median, raw_median = await validation_ratio(fixtures, signer, 2000)

        login = await seeded_login_service(fixtures, root, ORIGIN, sms_limits=NO_SMS_LIMITS)
        outbox = root / OUTBOX
        runner = web.AppRunner(create_app(login))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        serial = await logins_per_second(url, outbox, signer, 200, 1)
        parallel = await logins_per_second(url, outbox, signer, 200, 10)
        await runner.cleanup()
        signer.driver.close()

    print("token validation, EC P-256, warm path and CRL cache (2000 rounds)")
    print(f"  raw signature verification (cryptography): median {raw_median * 1e6:.0f} µs")
    print(f"  full validation (all nine checks):         median {validate_median * 1e6:.0f} µs")
    print(f"  ratio: {validate_median / raw_median:.2f} (goal <= 2)")
    print("logins through the HTTP API (challenge, token signed on SoftHSM2, person, SMS, session), 200 each")
    print(f"  one client: {serial:.0f} logins/s; ten clients: {parallel:.0f} logins/s")


if __name__ == "__main__":
    asyncio.run(main())
