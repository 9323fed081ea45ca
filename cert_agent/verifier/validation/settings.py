"""What a relying party validates against: its origin, trust anchors, CRLs, OCSP, revocation mode."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pem

from cert_agent.verifier.ocsp import OcspSettings

REVOCATION_MODES = {"fail-closed": "hard-fail", "fail-open": "soft-fail", "off": "none"}


def load_certificates(data: bytes) -> list[bytes]:
    """DER certificates from a DER or PEM file (PEM may hold several)."""
    if pem.detect(data):
        return [der for _, _, der in pem.unarmor(data, multiple=True)]
    return [data]


@dataclass(frozen=True)
class ValidatorSettings:
    origin: str  # the relying party's origin, exactly as browsers send it
    trust_anchors: tuple[bytes, ...]  # DER
    intermediates: tuple[bytes, ...] = ()  # DER, offered to path building
    revocation: str = "fail-closed"  # fail-closed | fail-open | off: what a missing CRL/OCSP answer means
    crls: tuple[bytes, ...] = ()  # DER CRLs known in advance (the tax authority's, published as files)
    allow_fetching: bool = False  # fetch CRLs / ask OCSP responders named in certificates
    disallowed_policies: frozenset[str] = frozenset()
    path_cache_seconds: float = 300.0  # how long a validated path (and its revocation status) is reused
    ocsp: OcspSettings | None = None  # ask an OCSP responder about the taxpayer certificate instead of CRLs

    def __post_init__(self) -> None:
        if self.revocation not in REVOCATION_MODES:
            raise ValueError(f"revocation must be one of {', '.join(REVOCATION_MODES)}")

    @classmethod
    def from_files(
        cls,
        origin: str,
        trust_anchors: Iterable[Path],
        intermediates: Iterable[Path] = (),
        crls: Iterable[Path] = (),
        revocation: str = "fail-closed",
        allow_fetching: bool = False,
        ocsp: OcspSettings | None = None,
    ) -> ValidatorSettings:
        """Settings from certificate files (DER or PEM) and DER CRL files."""
        return cls(
            origin=origin,
            trust_anchors=tuple(der for path in trust_anchors for der in load_certificates(path.read_bytes())),
            intermediates=tuple(der for path in intermediates for der in load_certificates(path.read_bytes())),
            revocation=revocation,
            crls=tuple(path.read_bytes() for path in crls),
            allow_fetching=allow_fetching,
            ocsp=ocsp,
        )
