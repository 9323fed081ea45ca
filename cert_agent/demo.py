"""The embedded demo: tax media simulated by SoftHSM2 tokens, driven through the real driver.

Builds a fresh fixture set in ``.demo/`` (its own SOFTHSM2_CONF, never the system's), then
shows what the agent sees: the tokens, their certificates and taxpayer IDs, a PIN check with
a wrong PIN, and a login-style signature verified against the certificate.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cert_agent.algorithms import SignatureAlgorithm
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from cert_agent.errors import AgentError
from cert_agent.pin import Pin
from softhsm_fixtures import build_fixtures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cert-agent demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".demo"), help="where the demo tokens live")
    args = parser.parse_args(argv)

    fixtures = build_fixtures(args.dir / "fixtures")
    os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
    print(f"演示证书介质已创建 (demo tokens): SOFTHSM2_CONF={fixtures.env.conf}\n")
    driver = Pkcs11Driver([fixtures.module], pin_max_tries=10)
    try:
        for token in driver.tokens():
            pin = next(t.pin for t in fixtures.tokens if t.serial == token.serial)
            state = token.pin_state.value
            print(f"[{token.medium.value}] {token.label}  序列号 {token.serial}  演示PIN {pin}  状态 {state}")
            for cert in driver.certificates(token):
                if cert.info is None:
                    print(f"    - {cert.cert_id[:8]} {cert.error.message if cert.error else ''}")
                    continue
                tid = cert.info.taxpayer_id
                print(
                    f"    - {cert.info.subject_cn}  {tid.value if tid else '-'}  有效期至 {cert.info.not_after.date()}"
                )

        ukey = fixtures.token("ukey")
        token = driver.find_token(label=ukey.label)
        print(f"\n用错误的证书密码登录 {ukey.label}:")
        try:
            driver.verify_pin(token, Pin("000000"))
        except AgentError as exc:
            print(f"    {exc.code}: {exc.message}")

        origin, nonce = "https://etax.qingdao.example", "demo-nonce-0123456789abcdef0123456789"
        data = hashlib.sha256(origin.encode()).digest() + hashlib.sha256(nonce.encode()).digest()
        cert_id = bytes.fromhex(fixtures.cert("hairun-ec").cert_id)
        signature = driver.sign(token, cert_id, Pin(ukey.pin), data, SignatureAlgorithm.ES256)
        public_key = fixtures.certificate("hairun-ec").public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        print(f"用正确的证书密码为 {origin} 签名登录挑战：签名已通过证书验证 (ES256, {len(signature)} bytes)")
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
