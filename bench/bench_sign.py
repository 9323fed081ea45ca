"""Signing through the driver against PyKCS11 called directly: same token, key and mechanism.

Both sides do the whole job a login signature needs: open a session, C_Login, find the key,
C_Sign (ECDSA P-256, SHA-256 hashed on the host, as SoftHSM2 has no CKM_ECDSA_SHA256),
C_Logout, close the session. The runs alternate so that both see the same machine state;
the ratio of the medians is printed (goal: <= 1.05). A third loop is PyKCS11 with the one
C_GetTokenInfo the driver makes before every session (the token check: the same serial still in
the slot, its PIN flags now), so the driver's own Python is told apart from the check's cost.

    python bench/bench_sign.py [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import PyKCS11

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import build_fixtures

DATA = b"\x01" * 64  # the size of H(origin) || H(nonce)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp))
        import os

        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        token_fixture = fixtures.token("ukey")
        cert_id = bytes.fromhex(fixtures.cert("hairun-ec").cert_id)

        driver = Pkcs11Driver([fixtures.module])
        token = driver.find_token(label=token_fixture.label)
        lib = PyKCS11.PyKCS11Lib().load(fixtures.module)
        mechanism = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None)

        def direct() -> bytes:
            session = lib.openSession(token.slot_id, PyKCS11.CKF_SERIAL_SESSION)
            try:
                session.login(token_fixture.pin)
                key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, cert_id)])[0]
                signature = bytes(session.sign(key, hashlib.sha256(DATA).digest(), mechanism))
                session.logout()
                return signature
            finally:
                session.closeSession()

        def direct_checked() -> bytes:
            lib.getTokenInfo(token.slot_id)
            return direct()

        def through_driver() -> bytes:
            return driver.sign(token, cert_id, Pin(token_fixture.pin), DATA, SignatureAlgorithm.ES256)

        for _ in range(20):  # warm up both paths
            direct()
            through_driver()
        checked_times: list[float] = []
        direct_times: list[float] = []
        driver_times: list[float] = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            direct()
            direct_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            direct_checked()
            checked_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            through_driver()
            driver_times.append(time.perf_counter() - start)
        lib.unload()
        driver.close()

    d_med, a_med = statistics.median(direct_times), statistics.median(driver_times)
    print(f"sign ES256 on SoftHSM2, {args.rounds} rounds each (session + login + sign + logout)")
    print(f"  PyKCS11 direct : median {d_med * 1e3:.3f} ms")
    print(f"  PyKCS11 direct + C_GetTokenInfo: median {statistics.median(checked_times) * 1e3:.3f} ms")
    print(f"  cert-agent driver: median {a_med * 1e3:.3f} ms")
    print(f"  ratio driver/direct at the median: {a_med / d_med:.3f} (goal <= 1.05)")
    print(f"  ratio driver/(direct + the token check): {a_med / statistics.median(checked_times):.3f}")


if __name__ == "__main__":
    main()
