"""An SM2 test PKI modelled on the tax authority's: an SM2 root CA, an SM2 issuing CA, and SM2
taxpayer certificates signed with SM2-with-SM3.

Made with the ``openssl`` command (OpenSSL 3), an implementation other than the agent's: every
signature with ``-sigopt distid:1234567812345678`` and every check with ``-vfyopt`` the same,
because OpenSSL 3 uses an empty ID unless told (GM/T 0009's default ID is 1234567812345678). Keys
are generated in the fixture directory, never in the repository.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from softhsm_fixtures.pki import Subject

DISTID = "distid:1234567812345678"
SM2_WITH_SM3 = "1.2.156.10197.1.501"
CA_ORGANIZATION = "国家税务总局（测试）"
SM2_CRL_URL = "http://crl.etax.test/ca/tax-test-sm2-issuing-ca.crl"
_EXTENSIONS = f"""[ca]
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[ocsp]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=OCSPSigning
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
crlDistributionPoints=URI:{SM2_CRL_URL}
"""


@dataclass(frozen=True)
class Sm2Authority:
    key: Path  # PEM
    certificate: Path  # PEM

    def der(self) -> bytes:
        return openssl("x509", "-in", str(self.certificate), "-outform", "DER")


@dataclass(frozen=True)
class Sm2Issued:
    key: Path  # PEM (PKCS#8)
    certificate_der: bytes


def openssl(*args: str) -> bytes:
    done = subprocess.run(["openssl", *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


def _subject(rdns: list[tuple[str, str]]) -> str:
    escaped = [(key, value.replace("/", "\\/")) for key, value in rdns]
    return "".join(f"/{key}={value}" for key, value in escaped)


def _ca_subject(common_name: str) -> str:
    return _subject([("C", "CN"), ("O", CA_ORGANIZATION), ("CN", common_name)])


def taxpayer_subject(subject: Subject) -> str:
    return _subject(
        [
            ("C", "CN"),
            ("ST", "山东省"),
            ("L", "青岛市"),
            ("O", subject.organization or subject.common_name),
            ("CN", subject.common_name),
            ("serialNumber", subject.taxpayer_id),
        ]
    )


def sm2_root(directory: Path, common_name: str = "税务测试 SM2 根 CA") -> Sm2Authority:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "sm2-root.key", directory / "sm2-root.pem"
    openssl("req", "-x509", "-newkey", "sm2", "-nodes", "-keyout", str(key), "-sm3", "-sigopt", DISTID, "-utf8",
            "-subj", _ca_subject(common_name), "-days", "3650", "-set_serial", "1",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash", "-out", str(cert))  # fmt: skip
    return Sm2Authority(key, cert)


def _sign_request(directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, request = directory / f"{name}.key", directory / f"{name}.csr"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-utf8", "-subj", subject, "-out", str(request))
    return key, request


def _issue(
    directory: Path, issuer: Sm2Authority, request: Path, name: str, section: str, serial: int, days: int
) -> Path:
    extensions = directory / "sm2-extensions.cnf"
    extensions.write_text(_EXTENSIONS, encoding="utf-8")
    cert = directory / f"{name}.pem"
    openssl("x509", "-req", "-in", str(request), "-CA", str(issuer.certificate), "-CAkey", str(issuer.key),
            "-sm3", "-sigopt", DISTID, "-vfyopt", DISTID, "-extfile", str(extensions), "-extensions", section,
            "-days", str(days), "-set_serial", str(serial), "-out", str(cert))  # fmt: skip
    return cert


def sm2_issuing_ca(directory: Path, root: Sm2Authority, common_name: str = "税务测试 SM2 签发 CA") -> Sm2Authority:
    key, request = _sign_request(directory, "sm2-issuing-ca", _ca_subject(common_name))
    return Sm2Authority(key, _issue(directory, root, request, "sm2-issuing-ca", "ca", serial=2, days=1825))


def sm2_ocsp_responder(directory: Path, ca: Sm2Authority) -> Sm2Authority:
    """An SM2 OCSP responder certificate the CA authorised (extendedKeyUsage OCSPSigning)."""
    key, request = _sign_request(directory, "sm2-ocsp-responder", _ca_subject("税务测试 SM2 OCSP 响应器"))
    return Sm2Authority(key, _issue(directory, ca, request, "sm2-ocsp-responder", "ocsp", serial=3, days=365))


def sm2_taxpayer(directory: Path, ca: Sm2Authority, name: str, subject: Subject, serial: int) -> Sm2Issued:
    """An SM2 key and its taxpayer certificate (digitalSignature, clientAuth), valid a year."""
    key, request = _sign_request(directory, name, taxpayer_subject(subject))
    cert = _issue(directory, ca, request, name, "leaf", serial=serial, days=365)
    return Sm2Issued(key, openssl("x509", "-in", str(cert), "-outform", "DER"))


def sm2_crl(directory: Path, ca: Sm2Authority, revoked: list[int], now: dt.datetime) -> bytes:
    """A CRL of ``ca`` (valid 30 days) listing the ``revoked`` serials, signed SM2-with-SM3 by the
    openssl command at the default ID (the TBS made with asn1crypto, signed with pkeyutl)."""
    from asn1crypto import crl, x509

    issuer = x509.Certificate.load(ca.der())
    algorithm = {"algorithm": SM2_WITH_SM3}
    yesterday = x509.Time({"utc_time": now - dt.timedelta(days=1)})
    tbs = crl.TbsCertList(
        {
            "version": "v2",
            "signature": algorithm,
            "issuer": issuer.subject,
            "this_update": yesterday,
            "next_update": x509.Time({"utc_time": now + dt.timedelta(days=30)}),
            "revoked_certificates": [{"user_certificate": s, "revocation_date": yesterday} for s in revoked] or None,
            "crl_extensions": [
                {"extn_id": "authority_key_identifier", "extn_value": {"key_identifier": issuer.key_identifier}},
                {"extn_id": "crl_number", "extn_value": 1},
            ],
        }
    )
    (directory / "sm2-crl.tbs").write_bytes(tbs.dump())
    signature = openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", DISTID, "-inkey", str(ca.key),
                        "-in", str(directory / "sm2-crl.tbs"))  # fmt: skip
    signed = crl.CertificateList({"tbs_cert_list": tbs, "signature_algorithm": algorithm, "signature": signature})
    return bytes(signed.dump())
