"""Builds the SM2 fixture media: an SM2 PKI (``sm2pki``, the openssl command) and the software SKF
device's store (``softskf``) with one device per ``SKF_MEDIA`` entry.

Everything is generated when the fixtures are built (about 0.1 s a certificate); keys stay in the
fixture directory. ``SkfFixtures.environ()`` is what a process needs to see the devices.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from softhsm_fixtures.pki import Subject
from softhsm_fixtures.sm2pki import (
    DISTID,
    openssl,
    sm2_crl,
    sm2_issuing_ca,
    sm2_ocsp_responder,
    sm2_root,
    sm2_taxpayer,
    taxpayer_subject,
)
from softhsm_fixtures.softskf import RSA_CONTAINER, SM2_CONTAINER, SoftSkfStore, softskf_library
from softhsm_fixtures.taxpayers import SKF_MEDIA, TAXPAYERS, SkfMediumSpec

APP_MANUFACTURER = "cert-agent softskf (test device)"


@dataclass(frozen=True)
class SkfFixtureCert:
    name: str
    container: str
    kind: str  # "SM2" or "RSA"
    taxpayer: str
    taxpayer_id: str
    der_path: str  # relative to the fixture root

    @property
    def cert_id(self) -> str:
        return self.container.encode("utf-8").hex()


@dataclass(frozen=True)
class SkfFixtureMedium:
    name: str
    label: str
    serial: str
    app: str
    pin: str
    max_tries: int
    is_default: bool
    certs: tuple[SkfFixtureCert, ...]

    @property
    def device(self) -> str:
        return f"dev-{self.name}"


@dataclass(frozen=True)
class SkfFixtures:
    root: Path
    library: str
    media: tuple[SkfFixtureMedium, ...]

    @property
    def store(self) -> SoftSkfStore:
        return SoftSkfStore(self.root / "store")

    def environ(self) -> dict[str, str]:
        return self.store.environ()

    @property
    def root_ca(self) -> Path:
        return self.root / "pki" / "sm2-root.pem"

    @property
    def issuing_ca(self) -> Path:
        return self.root / "pki" / "sm2-issuing-ca.pem"

    @property
    def ocsp_responder(self) -> Path:
        return self.root / "pki" / "sm2-ocsp-responder.pem"

    @property
    def ocsp_responder_key(self) -> Path:
        return self.root / "pki" / "sm2-ocsp-responder.key"

    @property
    def crl(self) -> Path:
        """The SM2 issuing CA's CRL (DER, SM2-with-SM3): it lists no certificate of the media."""
        return self.root / "pki" / "sm2-issuing-ca.crl"

    def medium(self, name: str) -> SkfFixtureMedium:
        return next(m for m in self.media if m.name == name)

    def cert(self, name: str) -> SkfFixtureCert:
        return next(c for m in self.media for c in m.certs if c.name == name)

    def medium_of(self, cert_name: str) -> SkfFixtureMedium:
        return next(m for m in self.media if any(c.name == cert_name for c in m.certs))

    def token_id(self, name: str) -> str:
        medium = self.medium(name)
        return f"{self.library}#{medium.serial}#{medium.app}"

    def certificate_der(self, cert_name: str) -> bytes:
        return (self.root / self.cert(cert_name).der_path).read_bytes()


def build_skf_fixtures(directory: Path, media: tuple[SkfMediumSpec, ...] = SKF_MEDIA) -> SkfFixtures:
    directory.mkdir(parents=True, exist_ok=True)
    pki = directory / "pki"
    root = sm2_root(pki)
    ca = sm2_issuing_ca(pki, root)
    sm2_ocsp_responder(pki, ca)  # pki/sm2-ocsp-responder.{pem,key}
    store = SoftSkfStore(directory / "store")
    store.root.mkdir(exist_ok=True)
    built = []
    serial = 100
    for spec in media:
        device = f"dev-{spec.name}"
        store.add_device(device, label=spec.label, serial=spec.serial, manufacturer=APP_MANUFACTURER)
        store.add_application(device, spec.app, pin=spec.pin, max_tries=spec.max_tries, is_default=spec.is_default)
        certs = []
        for container in spec.containers:
            serial += 1
            taxpayer = TAXPAYERS[container.taxpayer]
            subject = Subject(taxpayer.name, taxpayer.taxpayer_id)
            if container.kind == "SM2":
                issued = sm2_taxpayer(pki, ca, container.cert, subject, serial)
                key, der = issued.key, issued.certificate_der
            else:
                key, der = _rsa_taxpayer(pki, ca.key, ca.certificate, container.cert, subject, serial)
            kind = SM2_CONTAINER if container.kind == "SM2" else RSA_CONTAINER
            store.add_container(device, spec.app, container.name, kind=kind, key=key, certificate_der=der)
            (pki / f"{container.cert}.der").write_bytes(der)
            certs.append(
                SkfFixtureCert(
                    container.cert,
                    container.name,
                    container.kind,
                    container.taxpayer,
                    taxpayer.taxpayer_id,
                    f"pki/{container.cert}.der",
                )
            )
        if spec.locked:
            state = store.pin_state(device, spec.app) | {"remain": "0"}
            text = "".join(f"{key}={value}\n" for key, value in state.items())
            (store.device(device) / spec.app / "pin.conf").write_text(text, encoding="utf-8")
        built.append(
            SkfFixtureMedium(
                spec.name, spec.label, spec.serial, spec.app, spec.pin, spec.max_tries, spec.is_default, tuple(certs)
            )
        )
    (pki / "sm2-issuing-ca.crl").write_bytes(sm2_crl(pki, ca, [], dt.datetime.now(dt.UTC)))
    fixtures = SkfFixtures(directory.resolve(), softskf_library(), tuple(built))
    manifest = {"library": fixtures.library, "media": [asdict(m) for m in built]}
    (directory / "skf-manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return fixtures


def _rsa_taxpayer(
    pki: Path, ca_key: Path, ca_cert: Path, name: str, subject: Subject, serial: int
) -> tuple[Path, bytes]:
    """An RSA-2048 key and a certificate for it signed by the SM2 issuing CA (an RSA container)."""

    key, request, cert = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    openssl(
        "req", "-new", "-key", str(key), "-sha256", "-utf8", "-subj", taxpayer_subject(subject), "-out", str(request)
    )
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-sm3",
            "-sigopt", DISTID, "-extfile", str(pki / "sm2-extensions.cnf"), "-extensions", "leaf",
            "-days", "365", "-set_serial", str(serial), "-out", str(cert))  # fmt: skip
    return key, openssl("x509", "-in", str(cert), "-outform", "DER")
