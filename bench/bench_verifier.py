"""The verifier, in one run:

1. validating a token with warm caches (the certification path and CRL status cached) against
   one raw signature verification of the same token with pyca/cryptography: ratio of the
   medians (goal <= 2x);
2. whole logins per second through the HTTP API (challenge, token, person, SMS code, session)
   of a ``cert-verifier serve`` process on SQLite, the token signed on SoftHSM2 each time by
   this process (the load generator), one client and ten clients at once (goal: ten get at
   least as many as one).

    python bench/bench_verifier.py
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from bench.bench_verifier_scale import FastSigner, run_logins, started
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import auth_token, signed_data
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures import Fixtures, build_fixtures

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


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixtures = build_fixtures(root / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        signer = Signer(fixtures)
        validate_median, raw_median = await validation_ratio(fixtures, signer, 2000)

        signer.driver.close()
        generator = FastSigner(fixtures)
        verifier = started(fixtures, root / "sqlite", None)
        try:
            await run_logins([verifier], generator, 40, clients=10)  # warm: imports, caches
            serial = await run_logins([verifier], generator, 300, clients=1)
            parallel = await run_logins([verifier], generator, 300, clients=10)
        finally:
            verifier.stop()

    print("token validation, EC P-256, warm path and CRL cache (2000 rounds)")
    print(f"  raw signature verification (cryptography): median {raw_median * 1e6:.0f} µs")
    print(f"  full validation (all nine checks):         median {validate_median * 1e6:.0f} µs")
    print(f"  ratio: {validate_median / raw_median:.2f} (goal <= 2)")
    print("logins through the HTTP API of cert-verifier serve on SQLite (challenge, token signed on SoftHSM2,")
    print("person, SMS, session), 300 each")
    print(f"  one client: {serial:.0f} logins/s; ten clients: {parallel:.0f} logins/s (goal: ten >= one)")


if __name__ == "__main__":
    asyncio.run(main())
