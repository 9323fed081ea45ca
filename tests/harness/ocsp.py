"""A real OCSP responder for the tests: `openssl ocsp` serving the fixture PKI's issuing CA
from an OpenSSL CA index written from the fixture certificates and the CRL."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509

from softhsm_fixtures import Fixtures
from tests.harness.agent import free_port
from tests.harness.selfsigned import write_self_signed


def _openssl_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")


def write_index(fixtures: Fixtures, path: Path, omit: frozenset[str] = frozenset()) -> None:
    """One line per fixture certificate (V valid, R revoked with its date), as `openssl ca`
    keeps them; certificates named in ``omit`` are unknown to the responder."""
    crl = x509.load_der_x509_crl(fixtures.crl.read_bytes())
    lines = []
    for pem in sorted((fixtures.root / "pki" / "certs").glob("*.pem")):
        if pem.stem in omit:
            continue
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        serial = f"{cert.serial_number:X}"
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        expiry = _openssl_time(cert.not_valid_after_utc)
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            lines.append(
                f"R\t{expiry}\t{_openssl_time(revoked.revocation_date_utc)}\t{serial}\tunknown\t/CN={pem.stem}"
            )
        else:
            lines.append(f"V\t{expiry}\t\t{serial}\tunknown\t/CN={pem.stem}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def index_line(certificate_der: bytes, revoked_at: dt.datetime | None = None) -> str:
    """One line of an `openssl ca` index for a certificate (read with asn1crypto: SM2 ones too)."""
    from asn1crypto import x509 as asn1_x509

    cert = asn1_x509.Certificate.load(certificate_der)
    serial = f"{cert.serial_number:X}"
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    expiry = _openssl_time(cert["tbs_certificate"]["validity"]["not_after"].native)
    if revoked_at is not None:
        return f"R\t{expiry}\t{_openssl_time(revoked_at)}\t{serial}\tunknown\t/CN={serial}"
    return f"V\t{expiry}\t\t{serial}\tunknown\t/CN={serial}"


def make_rogue_responder(directory: Path) -> tuple[Path, Path]:
    """A self-signed responder certificate and key that no CA authorised."""
    return write_self_signed(directory, "rogue-responder", "冒充的OCSP响应器", days=30)


class OcspResponder:
    """`openssl ocsp -index ... -port ...` signing with ``signer``/``key`` (default: the
    responder certificate the issuing CA authorised)."""

    def __init__(
        self,
        fixtures: Fixtures | None,
        directory: Path,
        *,
        signer: Path | None = None,
        key: Path | None = None,
        omit: frozenset[str] = frozenset(),
        ca: Path | None = None,
        index_lines: list[str] | None = None,
        signing: tuple[str, ...] = (),
    ) -> None:
        """``fixtures`` None: the index, CA, signer and key are given (``index_lines``, ...);
        ``signing`` is more of openssl's response-signing options (-rmd, -rsigopt)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.index = directory / "index.txt"
        if fixtures is not None:
            write_index(fixtures, self.index, omit)
            signer, key, ca = signer or fixtures.ocsp_responder, key or fixtures.ocsp_responder_key, fixtures.issuing_ca
        else:
            self.index.write_text("\n".join(index_lines or []) + "\n", encoding="utf-8")
        assert signer is not None and key is not None and ca is not None
        self.command = [
            "openssl", "ocsp", "-index", str(self.index), "-port", str(self.port),
            "-rsigner", str(signer), "-rkey", str(key), "-CA", str(ca), "-nmin", "5", "-ignore_err", *signing,
        ]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start it and wait for its "ACCEPT" line (it serves one connection at a time, so a
        probing connection would hold it up)."""
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("ACCEPT"):
            raise RuntimeError(f"openssl ocsp did not start: {line!r}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
