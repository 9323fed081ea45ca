"""Makes tests/vectors/sm2/vectors.json: SM2 auth tokens and their mutations, as data.

Made outside the verifier: certificates by the ``openssl`` command (always with the GM/T 0009
default ID), token signatures by gmalg (a pure-Python SM2, used only by tests), the empty-ID one by
``openssl pkeyutl`` without ``distid`` (OpenSSL 3's default). No private key is kept: they live
in a temporary folder. Run it again only to change the vectors:

    python -m tests.vectors.make_sm2_vectors
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import gmalg
from asn1crypto import keys, pem
from asn1crypto.algos import DSASignature

from softhsm_fixtures.pki import Subject
from softhsm_fixtures.sm2pki import openssl, sm2_issuing_ca, sm2_root, sm2_taxpayer
from softhsm_fixtures.taxpayers import TAXPAYERS

OUT = Path(__file__).with_name("sm2") / "vectors.json"
ORIGIN = "https://etax.example.com"
NONCE = base64.b64encode(hashlib.sha256(b"sm2 vectors nonce").digest()).decode()
DEFAULT_ID = b"1234567812345678"


def _sm3_signed_data(origin: str, nonce: str) -> bytes:
    return hashlib.new("sm3", origin.encode()).digest() + hashlib.new("sm3", nonce.encode()).digest()


def _private_scalar(key_pem: Path) -> bytes:
    _, _, der = pem.unarmor(key_pem.read_bytes())
    info = keys.PrivateKeyInfo.load(der)
    return int(info["private_key"].parsed["private_key"].native).to_bytes(32, "big")


def _gmalg_sign(key_pem: Path, certificate_der: bytes, data: bytes, uid: bytes) -> bytes:
    from asn1crypto import x509

    point = x509.Certificate.load(certificate_der)["tbs_certificate"]["subject_public_key_info"]["public_key"].native
    r, s = gmalg.SM2(sk=_private_scalar(key_pem), pk=point, uid=uid).sign(data)
    return bytes(DSASignature({"r": int.from_bytes(r, "big"), "s": int.from_bytes(s, "big")}).dump())


def _openssl_sign_without_id(key_pem: Path, data: bytes, folder: Path) -> bytes:
    (folder / "data").write_bytes(data)
    subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(key_pem),
         "-in", str(folder / "data"), "-out", str(folder / "sig")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (folder / "sig").read_bytes()


def _token(certificate_der: bytes, algorithm: str, signature: bytes) -> dict[str, str]:
    return {
        "unverifiedCertificate": base64.b64encode(certificate_der).decode(),
        "algorithm": algorithm,
        "signature": base64.b64encode(signature).decode(),
        "format": "web-eid:1.0",
        "appVersion": "https://cert-agent.invalid/releases/vectors",
    }


def _sm2_crl(ca_key: Path, ca_der: bytes, revoked_serial: int, now: dt.datetime, *, bad_signature: bool) -> bytes:
    """A CRL of the SM2 CA listing ``revoked_serial``, signed SM2-with-SM3 by gmalg."""
    from asn1crypto import crl, x509

    ca = x509.Certificate.load(ca_der)
    algorithm = {"algorithm": "1.2.156.10197.1.501"}
    tbs = crl.TbsCertList(
        {
            "version": "v2",
            "signature": algorithm,
            "issuer": ca.subject,
            "this_update": x509.Time({"utc_time": now - dt.timedelta(days=1)}),
            "next_update": x509.Time({"utc_time": now + dt.timedelta(days=30)}),
            "revoked_certificates": [
                {
                    "user_certificate": revoked_serial,
                    "revocation_date": x509.Time({"utc_time": now - dt.timedelta(days=1)}),
                }
            ],
            "crl_extensions": [
                {"extn_id": "authority_key_identifier", "extn_value": {"key_identifier": ca.key_identifier}},
                {"extn_id": "crl_number", "extn_value": 1},
            ],
        }
    )
    point = ca["tbs_certificate"]["subject_public_key_info"]["public_key"].native
    r, s = gmalg.SM2(sk=_private_scalar(ca_key), pk=point, uid=DEFAULT_ID).sign(tbs.dump())
    signature = DSASignature({"r": int.from_bytes(r, "big"), "s": int.from_bytes(s, "big")}).dump()
    if bad_signature:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    return bytes(
        crl.CertificateList({"tbs_cert_list": tbs, "signature_algorithm": algorithm, "signature": signature}).dump()
    )


def _ecdsa_chain(folder: Path) -> tuple[bytes, bytes]:
    """An ECDSA P-256 root and a taxpayer certificate under it (a mixed set of trust anchors)."""
    key, root = folder / "ec-root.key", folder / "ec-root.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-sha256", "-subj", "/C=CN/O=Test/CN=ECDSA test root", "-days", "3650",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(root))  # fmt: skip
    leaf_key, csr, leaf = folder / "ec-leaf.key", folder / "ec-leaf.csr", folder / "ec-leaf.pem"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(leaf_key), "-subj", "/C=CN/O=Test/CN=ECDSA taxpayer/serialNumber=91370202MA3C4Q7X1M",
            "-out", str(csr))  # fmt: skip
    (folder / "ec.cnf").write_text(
        "[leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        encoding="utf-8",
    )
    openssl("x509", "-req", "-in", str(csr), "-CA", str(root), "-CAkey", str(key), "-sha256", "-days", "365",
            "-extfile", str(folder / "ec.cnf"), "-extensions", "leaf", "-set_serial", "9",
            "-out", str(leaf))  # fmt: skip
    return _der(root), _der(leaf)


def _der(path: Path) -> bytes:
    return openssl("x509", "-in", str(path), "-outform", "DER")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = sm2_root(folder)
        ca = sm2_issuing_ca(folder, root)
        hairun = TAXPAYERS["hairun"]
        leaf = sm2_taxpayer(folder, ca, "sm2-leaf", Subject(hairun.name, hairun.taxpayer_id), 100)
        other = sm2_taxpayer(folder, ca, "sm2-other", Subject(hairun.name, hairun.taxpayer_id), 101)
        ec_root, ec_leaf = _ecdsa_chain(folder)
        data = _sm3_signed_data(ORIGIN, NONCE)
        good = _gmalg_sign(leaf.key, leaf.certificate_der, data, DEFAULT_ID)
        tampered = bytearray(leaf.certificate_der)
        at = tampered.find(hairun.taxpayer_id.encode())
        tampered[at] ^= 0x01  # one character of the subject's taxpayer ID: the CA's signature no longer fits
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        revoked = sm2_taxpayer(folder, ca, "sm2-revoked", Subject(hairun.name, hairun.taxpayer_id), 102)
        revoked_good = _gmalg_sign(revoked.key, revoked.certificate_der, data, DEFAULT_ID)
        crl = _sm2_crl(ca.key, ca.der(), 102, now, bad_signature=False)
        bad_crl = _sm2_crl(ca.key, ca.der(), 102, now, bad_signature=True)
        crls = [base64.b64encode(crl).decode()]
        vectors = [
            ("sm2-valid", _token(leaf.certificate_der, "SM2SM3", good), "valid", None),
            ("sm2-valid-crl-checked", _token(leaf.certificate_der, "SM2SM3", good), "valid", None, crls),
            ("sm2-revoked-by-sm2-crl", _token(revoked.certificate_der, "SM2SM3", revoked_good), "invalid",
             "CERT_REVOKED", crls),
            ("sm2-crl-with-bad-signature", _token(revoked.certificate_der, "SM2SM3", revoked_good), "invalid",
             "REVOCATION_UNAVAILABLE", [base64.b64encode(bad_crl).decode()]),
            ("sm2-empty-id", _token(leaf.certificate_der, "SM2SM3", _openssl_sign_without_id(leaf.key, data, folder)),
             "invalid", "SM2_WRONG_ID"),
            ("sm2-other-key", _token(leaf.certificate_der, "SM2SM3",
                                     _gmalg_sign(other.key, other.certificate_der, data, DEFAULT_ID)),
             "invalid", "SIGNATURE_INVALID"),
            ("sm2-other-origin", _token(leaf.certificate_der, "SM2SM3",
                                        _gmalg_sign(leaf.key, leaf.certificate_der,
                                                    _sm3_signed_data("https://evil.example", NONCE), DEFAULT_ID)),
             "invalid", "SIGNATURE_INVALID"),
            ("sm2-tampered-tbs", _token(bytes(tampered), "SM2SM3", good), "invalid", "CERT_UNTRUSTED"),
            ("sm2-claimed-for-ecdsa", _token(ec_leaf, "SM2SM3", good), "invalid", "ALGORITHM_KEY_MISMATCH"),
            ("ecdsa-claimed-for-sm2", _token(leaf.certificate_der, "ES256", bytes(64)), "invalid",
             "ALGORITHM_KEY_MISMATCH"),
            ("sm2-unknown-name", _token(leaf.certificate_der, "SM3withSM2", good), "invalid", "UNSUPPORTED_ALGORITHM"),
        ]  # fmt: skip
        document = {
            "about": "SM2 auth tokens for the verifier; made by tests/vectors/make_sm2_vectors.py",
            "origin": ORIGIN,
            "nonce": NONCE,
            "at": (now + dt.timedelta(days=1)).isoformat(),
            "trustAnchors": [base64.b64encode(root.der()).decode(), base64.b64encode(ec_root).decode()],
            "intermediates": [base64.b64encode(ca.der()).decode()],
            "vectors": [
                {"name": v[0], "token": v[1], "expect": v[2], "code": v[3], "crls": v[4] if len(v) > 4 else None}
                for v in vectors
            ],
        }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
