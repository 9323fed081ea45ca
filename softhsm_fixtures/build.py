"""Build a fixture set: the test PKI, SoftHSM2 tokens holding its certificates, a manifest.

Layout of a fixture directory::

    softhsm2.conf, tokens/        SoftHSM2's private configuration and store
    pki/root-ca.pem               trust anchor of the tax authority (test)
    pki/issuing-ca.pem            the CA that issues taxpayer certificates
    pki/issuing-ca.crl            its CRL (DER), naming the revoked fixture certificate
    pki/untrusted-ca.pem          a CA nobody trusts, issuer of the "untrusted" certificate
    pki/ocsp-responder.pem, -key.pem  a responder the issuing CA authorises to sign OCSP answers
    pki/certs/NAME.pem            every end-entity certificate, by fixture name
    manifest.json                 tokens (label, serial, PIN) and certificates, for programs

The manifest is read back with :func:`load_fixtures`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from softhsm_fixtures.pki import (
    ONE_DAY,
    CertificateAuthority,
    Subject,
    Validity,
    issue_end_entity,
    make_crl,
    make_intermediate,
    make_ocsp_responder,
    make_root,
)
from softhsm_fixtures.softhsm import (
    SoftHsmEnv,
    find_module,
    generate_key_pair,
    provisioning_library,
    store_certificate,
    user_session,
)
from softhsm_fixtures.taxpayers import SO_PIN, TAXPAYERS, TOKENS, CertSpec, TokenSpec

UNPARSABLE_CERTIFICATE = b"\x30\x82\x01\x00not a certificate"


@dataclass(frozen=True)
class FixtureCert:
    name: str
    cert_id: str  # hex CKA_ID
    taxpayer: str
    taxpayer_id: str
    subject_cn: str
    key_type: str
    variant: str
    with_key: bool
    unparsable: bool
    pem_path: str | None


@dataclass(frozen=True)
class FixtureToken:
    name: str
    label: str
    serial: str
    pin: str
    so_pin: str
    certs: tuple[FixtureCert, ...]


@dataclass(frozen=True)
class Fixtures:
    root: Path
    module: str
    tokens: tuple[FixtureToken, ...]

    @property
    def env(self) -> SoftHsmEnv:
        return SoftHsmEnv(self.root)

    @property
    def root_ca(self) -> Path:
        return self.root / "pki" / "root-ca.pem"

    @property
    def issuing_ca(self) -> Path:
        return self.root / "pki" / "issuing-ca.pem"

    @property
    def untrusted_ca(self) -> Path:
        return self.root / "pki" / "untrusted-ca.pem"

    @property
    def ocsp_responder(self) -> Path:
        return self.root / "pki" / "ocsp-responder.pem"

    @property
    def ocsp_responder_key(self) -> Path:
        return self.root / "pki" / "ocsp-responder-key.pem"

    @property
    def crl(self) -> Path:
        return self.root / "pki" / "issuing-ca.crl"

    def token(self, name: str) -> FixtureToken:
        return next(t for t in self.tokens if t.name == name)

    def cert(self, name: str) -> FixtureCert:
        return next(c for t in self.tokens for c in t.certs if c.name == name)

    def token_of(self, cert_name: str) -> FixtureToken:
        return next(t for t in self.tokens if any(c.name == cert_name for c in t.certs))

    def certificate(self, name: str) -> x509.Certificate:
        path = self.cert(name).pem_path
        if path is None:
            raise KeyError(f"fixture {name} has no certificate")
        return x509.load_pem_x509_certificate((self.root / path).read_bytes())


def build_fixtures(
    directory: Path, *, now: dt.datetime | None = None, tokens: tuple[TokenSpec, ...] = TOKENS
) -> Fixtures:
    """Create the fixture set in ``directory`` (its tokens replaced). Takes about a second.
    ``tokens`` chooses the media (default: all of the catalog's; the demo uses DEMO_TOKENS)."""
    specs = tokens
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    env = SoftHsmEnv(directory)
    env.create()
    pki_dir = directory / "pki"
    (pki_dir / "certs").mkdir(parents=True, exist_ok=True)

    root = make_root("国家税务总局测试根CA", now)
    issuing = make_intermediate("国家税务总局测试签发CA", root, now)
    untrusted = make_root("未受信任的测试CA", now)

    for spec in specs:
        env.init_token(spec.label, SO_PIN, spec.pin)
    module = find_module()
    built: list[FixtureToken] = []
    with provisioning_library(module, env) as lib:
        for spec in specs:
            with user_session(lib, spec.label, spec.pin) as (session, serial):
                certs = tuple(_provision_cert(session, cert, issuing, untrusted, now, pki_dir) for cert in spec.certs)
            built.append(FixtureToken(spec.name, spec.label, serial, spec.pin, SO_PIN, certs))
    _mark_flags(env, specs)

    (pki_dir / "root-ca.pem").write_bytes(root.pem())
    (pki_dir / "issuing-ca.pem").write_bytes(issuing.pem())
    (pki_dir / "untrusted-ca.pem").write_bytes(untrusted.pem())
    responder, responder_key = make_ocsp_responder(issuing, now)
    (pki_dir / "ocsp-responder.pem").write_bytes(responder.public_bytes(serialization.Encoding.PEM))
    (pki_dir / "ocsp-responder-key.pem").write_bytes(
        responder_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    crl = make_crl(issuing, now)
    (pki_dir / "issuing-ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))

    fixtures = Fixtures(directory.resolve(), module, tuple(built))
    manifest = {"module": module, "tokens": [asdict(t) for t in built]}
    (directory / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return fixtures


def load_fixtures(directory: Path) -> Fixtures:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    tokens = tuple(
        FixtureToken(
            **{k: v for k, v in t.items() if k != "certs"},
            certs=tuple(FixtureCert(**c) for c in t["certs"]),
        )
        for t in manifest["tokens"]
    )
    return Fixtures(directory.resolve(), manifest["module"], tokens)


def _validity(variant: str, now: dt.datetime) -> Validity:
    if variant == "expired":
        return Validity(now - 400 * ONE_DAY, now - 35 * ONE_DAY)
    if variant == "not_yet_valid":
        return Validity(now + 30 * ONE_DAY, now + 400 * ONE_DAY)
    return Validity(now - 30 * ONE_DAY, now + 365 * ONE_DAY)


def _provision_cert(
    session: object,
    spec: CertSpec,
    issuing: CertificateAuthority,
    untrusted: CertificateAuthority,
    now: dt.datetime,
    pki_dir: Path,
) -> FixtureCert:
    taxpayer = TAXPAYERS[spec.taxpayer]
    label = f"{taxpayer.name} {spec.name}"
    object_id = hashlib.sha1(spec.name.encode()).digest()  # stable and unique per fixture
    if spec.unparsable:
        store_certificate(session, UNPARSABLE_CERTIFICATE, object_id, label)
        return _describe(spec, object_id, taxpayer.taxpayer_id, taxpayer.name, None)
    if spec.with_key:
        # The key pair is made on the token; only its public half comes out.
        public_key = generate_key_pair(session, spec.key_type, object_id, label)
    else:  # a certificate whose private key is nowhere: generated here and thrown away
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key()

    ca = untrusted if spec.variant == "untrusted" else issuing
    subject = Subject(taxpayer.name, taxpayer.taxpayer_id)
    certificate = issue_end_entity(
        ca,
        subject,
        public_key,
        _validity(spec.variant, now),
        digital_signature=spec.variant != "no_digital_signature",
    )
    if spec.variant == "revoked":
        issuing.revoked.append((certificate.serial_number, now - 2 * ONE_DAY))
    store_certificate(session, certificate, object_id, label)
    pem_rel = f"pki/certs/{spec.name}.pem"
    (pki_dir / "certs" / f"{spec.name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return _describe(spec, object_id, taxpayer.taxpayer_id, taxpayer.name, pem_rel)


def _describe(spec: CertSpec, object_id: bytes, taxpayer_id: str, cn: str, pem: str | None) -> FixtureCert:
    return FixtureCert(
        name=spec.name,
        cert_id=object_id.hex(),
        taxpayer=spec.taxpayer,
        taxpayer_id=taxpayer_id,
        subject_cn=cn,
        key_type=spec.key_type,
        variant=spec.variant,
        with_key=spec.with_key,
        unparsable=spec.unparsable,
        pem_path=pem,
    )


def _mark_flags(env: SoftHsmEnv, specs: tuple[TokenSpec, ...]) -> None:
    for spec in specs:
        if spec.flags:
            env.set_token_flags(spec.label, spec.flags)
