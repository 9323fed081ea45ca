"""Validation of a Web eID authentication token, as a short ordered list of small checks.

Each check either passes or raises one error with its own stable code (``cert_agent.verifier.errors``,
section "the verifier"). The order is the Web eID libraries' order, so that a token with
several defects is refused for the same reason they would give:

1. structure: a JSON object within size limits, every field a non-empty string, base64;
2. format: ``web-eid:1`` or ``web-eid:1.x``;
3. certificate: decodes as X.509 (leniently: some cards' certificates are not strict DER);
4. purpose: keyUsage digitalSignature; clientAuth when there is an extendedKeyUsage;
5. policies: none of the disallowed certificate policies;
6. validity: the certificate, then the trust anchor that issued it, at the validation time;
7. chain and revocation: a path to a trust anchor (pyhanko-certvalidator), with the CRL or
   OCSP status as the revocation setting says;
8. algorithm: one of ES/PS/RS 256/384/512;
9. signature: over H(origin) || H(nonce), with the certificate's key.

The nonce is not checked here: the login flow consumes it from the challenge store first (one
use, five minutes) and passes its value in, so a replayed or foreign nonce never gets this far.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    RevokedError,
    ValidationError,
)

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.taxpayer_id import TaxpayerId, parse_taxpayer_id
from cert_agent.verifier.errors import (
    AuthTokenBadFormat,
    AuthTokenInvalid,
    AuthTokenMalformed,
    CertBadEku,
    CertBadKeyUsage,
    CertDisallowedPolicy,
    CertExpired,
    CertNotYetValid,
    CertRevoked,
    CertUntrusted,
    RevocationUnavailable,
    SignatureInvalid,
)
from cert_agent.verifier.errors import UnsupportedAlgorithm as UnsupportedAlgorithmError

MAX_TOKEN_BYTES = 16 * 1024
FACTS_CACHE_SIZE = 4096  # parsed certificates kept, oldest dropped first
REQUIRED_FIELDS = ("format", "unverifiedCertificate", "algorithm", "signature")
REVOCATION_MODES = {"fail-closed": "hard-fail", "fail-open": "soft-fail", "off": "none"}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


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
    ) -> ValidatorSettings:
        """Settings from certificate files (DER or PEM) and DER CRL files."""
        return cls(
            origin=origin,
            trust_anchors=tuple(der for path in trust_anchors for der in load_certificates(path.read_bytes())),
            intermediates=tuple(der for path in intermediates for der in load_certificates(path.read_bytes())),
            revocation=revocation,
            crls=tuple(path.read_bytes() for path in crls),
            allow_fetching=allow_fetching,
        )


@dataclass(frozen=True)
class ValidatedAuthToken:
    certificate_der: bytes
    subject: str
    subject_cn: str | None
    taxpayer_id: TaxpayerId | None
    algorithm: str


@dataclass(frozen=True)
class CertificateFacts:
    """What the checks need of one certificate, parsed once and kept by its SHA-256."""

    cert: asn1_x509.Certificate
    key_usage: frozenset[str] | None
    extended_key_usage: frozenset[str] | None
    policies: frozenset[str]
    not_before: dt.datetime
    not_after: dt.datetime
    public_key: Any  # a pyca/cryptography public key; None if it cannot be loaded (fails at the signature)
    subject: str
    subject_cn: str | None
    taxpayer_id: TaxpayerId | None

    @classmethod
    def parse(cls, der: bytes) -> CertificateFacts:
        cert = asn1_x509.Certificate.load(der, strict=True)
        # asn1crypto parses lazily, and normalizes names only when they are compared: do both now,
        # so a broken field or an unusable name is TOKEN_MALFORMED here, not an error in a later check.
        cert.native  # noqa: B018
        cert.subject.hashable  # noqa: B018
        cert.issuer.hashable  # noqa: B018
        usage = cert.key_usage_value
        extended = cert.extended_key_usage_value
        policies = cert.certificate_policies_value
        validity = cert["tbs_certificate"]["validity"]
        cn = cert.subject.native.get("common_name")
        return cls(
            cert=cert,
            key_usage=frozenset(usage.native) if usage is not None else None,
            extended_key_usage=frozenset(extended.native) if extended is not None else None,
            policies=frozenset(p["policy_identifier"].dotted for p in policies)
            if policies is not None
            else frozenset(),
            not_before=validity["not_before"].native,
            not_after=validity["not_after"].native,
            public_key=_public_key(cert),
            subject=cert.subject.human_friendly,
            subject_cn=cn if isinstance(cn, str) else None,
            taxpayer_id=taxpayer_id_of(cert),
        )


@dataclass
class _Work:
    """What the checks learn about one token as they go."""

    token: dict[str, str]
    nonce: str
    at: dt.datetime
    der: bytes = b""
    facts: CertificateFacts | None = None
    algorithm: SignatureAlgorithm | None = None
    pinned_time: bool = False  # validated at a given moment (support, tests): no path cache

    @property
    def certificate(self) -> CertificateFacts:
        assert self.facts is not None  # set by check_certificate, which runs first
        return self.facts


class AuthTokenValidator:
    def __init__(self, settings: ValidatorSettings, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._anchors = [asn1_x509.Certificate.load(der) for der in settings.trust_anchors]
        self._intermediates = [asn1_x509.Certificate.load(der) for der in settings.intermediates]
        self._path_cache: dict[bytes, tuple[float, AuthTokenInvalid | None]] = {}
        self._facts: dict[bytes, CertificateFacts] = {}
        self.checks: list[Callable[[_Work], Any]] = [
            self.check_structure,
            self.check_format,
            self.check_certificate,
            self.check_purpose,
            self.check_policies,
            self.check_validity,
            self.check_chain,
            self.check_algorithm,
            self.check_signature,
        ]

    async def validate(self, token: Any, nonce: str, at: dt.datetime | None = None) -> ValidatedAuthToken:
        """Run the checks in order; the first failure is raised, else the login identity."""
        work = _Work(token=token, nonce=nonce, at=at or self._clock(), pinned_time=at is not None)
        for check in self.checks:
            result = check(work)
            if hasattr(result, "__await__"):
                await result
        facts = work.certificate
        return ValidatedAuthToken(
            certificate_der=work.der,
            subject=facts.subject,
            subject_cn=facts.subject_cn,
            taxpayer_id=facts.taxpayer_id,
            algorithm=work.token["algorithm"],
        )

    # --- the checks, in order ---------------------------------------------------------------

    def check_structure(self, work: _Work) -> None:
        token = work.token
        if not isinstance(token, dict):
            raise AuthTokenMalformed("the token is not a JSON object")
        size = sum(len(str(k)) + len(v) if isinstance(v, str) else len(json.dumps(v)) for k, v in token.items())
        if size > MAX_TOKEN_BYTES:
            raise AuthTokenMalformed(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
        for name in REQUIRED_FIELDS:
            value = token.get(name)
            if not isinstance(value, str) or not value:
                raise AuthTokenMalformed(f"{name}: a non-empty string is required")

    def check_format(self, work: _Work) -> None:
        value = work.token["format"]
        if value != "web-eid:1" and not value.startswith("web-eid:1."):
            raise AuthTokenBadFormat(value[:40])

    def check_certificate(self, work: _Work) -> None:
        try:
            work.der = base64.b64decode(work.token["unverifiedCertificate"], validate=True)
        except ValueError:  # binascii.Error, or a string that is not ASCII
            raise AuthTokenMalformed("unverifiedCertificate: not base64") from None
        key = hashlib.sha256(work.der).digest()
        facts = self._facts.get(key)
        if facts is None:
            try:
                facts = CertificateFacts.parse(work.der)
            except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
                raise AuthTokenMalformed(f"unverifiedCertificate: {type(exc).__name__}") from None
            if len(self._facts) >= FACTS_CACHE_SIZE:
                self._facts.pop(next(iter(self._facts)))
            self._facts[key] = facts
        work.facts = facts

    def check_purpose(self, work: _Work) -> None:
        facts = work.certificate
        if facts.key_usage is None or "digital_signature" not in facts.key_usage:
            raise CertBadKeyUsage()
        if facts.extended_key_usage is not None and "client_auth" not in facts.extended_key_usage:
            raise CertBadEku()

    def check_policies(self, work: _Work) -> None:
        disallowed = work.certificate.policies & self.settings.disallowed_policies
        if disallowed:
            raise CertDisallowedPolicy(min(disallowed))

    def check_validity(self, work: _Work) -> None:
        facts = work.certificate
        _within(facts.not_before, facts.not_after, work.at, "certificate")
        for anchor in self._anchors:
            if anchor.subject == facts.cert.issuer:
                validity = anchor["tbs_certificate"]["validity"]
                _within(validity["not_before"].native, validity["not_after"].native, work.at, "trust anchor")

    async def check_chain(self, work: _Work) -> None:
        if work.pinned_time:
            await self._validate_path(work)
            return
        key = hashlib.sha256(work.der).digest()
        cached = self._path_cache.get(key)
        if cached and cached[0] > time.monotonic():
            if cached[1] is not None:
                raise cached[1]
            return
        error: AuthTokenInvalid | None = None
        try:
            await self._validate_path(work)
        except AuthTokenInvalid as exc:
            error = exc
        self._path_cache[key] = (time.monotonic() + self.settings.path_cache_seconds, error)
        if error is not None:
            raise error

    def check_algorithm(self, work: _Work) -> None:
        try:
            work.algorithm = SignatureAlgorithm(work.token["algorithm"])
        except ValueError:
            raise UnsupportedAlgorithmError(repr(work.token["algorithm"][:20])) from None

    def check_signature(self, work: _Work) -> None:
        algorithm = work.algorithm
        assert algorithm is not None
        try:
            signature = base64.b64decode(work.token["signature"], validate=True)
        except ValueError:  # binascii.Error, or a string that is not ASCII
            raise AuthTokenMalformed("signature: not base64") from None
        hash_factory = _HASHES[algorithm.hash_name]
        name = algorithm.hash_name
        data = (
            hashlib.new(name, self.settings.origin.encode("utf-8")).digest()
            + hashlib.new(name, work.nonce.encode("utf-8")).digest()
        )
        try:
            public_key = work.certificate.public_key
            if public_key is None:
                raise SignatureInvalid("the certificate's public key cannot be used")
            if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm.value.startswith("ES"):
                size = (public_key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    raise SignatureInvalid("ECDSA signature length")
                r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_factory()))
            elif isinstance(public_key, rsa.RSAPublicKey) and algorithm.value.startswith("PS"):
                pss = padding.PSS(mgf=padding.MGF1(hash_factory()), salt_length=algorithm.hash_size)
                public_key.verify(signature, data, pss, hash_factory())
            elif isinstance(public_key, rsa.RSAPublicKey) and algorithm.value.startswith("RS"):
                public_key.verify(signature, data, padding.PKCS1v15(), hash_factory())
            else:
                raise SignatureInvalid(f"{algorithm.value} does not fit the certificate's key")
        except (InvalidSignature, ValueError, UnsupportedAlgorithm):
            raise SignatureInvalid() from None

    # --- helpers ----------------------------------------------------------------------------

    async def _validate_path(self, work: _Work) -> None:
        context = ValidationContext(
            trust_roots=self._anchors,
            other_certs=self._intermediates,
            moment=work.at,
            revocation_mode=REVOCATION_MODES[self.settings.revocation],
            crls=list(self.settings.crls),
            allow_fetching=self.settings.allow_fetching and self.settings.revocation != "off",
        )
        validator = CertificateValidator(
            work.certificate.cert, intermediate_certs=self._intermediates, validation_context=context
        )
        try:
            await validator.async_validate_path()
        except RevokedError:
            raise CertRevoked() from None
        except InsufficientRevinfoError as exc:
            raise RevocationUnavailable(str(exc)[:200]) from None
        except ExpiredError:
            raise CertExpired("a certificate of the chain") from None
        except NotYetValidError:
            raise CertNotYetValid("a certificate of the chain") from None
        except PathBuildingError:
            raise CertUntrusted("no path to a trust anchor") from None
        except ValidationError as exc:
            text = str(exc)
            if "revocation" in text.lower() or "crl" in text.lower():
                raise RevocationUnavailable(text[:200]) from None
            raise CertUntrusted(text[:200]) from None


def _public_key(cert: asn1_x509.Certificate) -> Any:
    try:
        return load_der_public_key(cert.public_key.dump())
    except (ValueError, UnsupportedAlgorithm):
        return None


def _within(not_before: dt.datetime, not_after: dt.datetime, at: dt.datetime, what: str) -> None:
    if at < not_before:
        raise CertNotYetValid(what)
    if at > not_after:
        raise CertExpired(what)


def taxpayer_id_of(cert: asn1_x509.Certificate) -> TaxpayerId | None:
    """The taxpayer ID in the subject: serialNumber first, then organizational units."""
    subject = cert.subject.native
    candidates: list[Any] = []
    for key in ("serial_number", "organizational_unit_name"):
        value = subject.get(key)
        candidates.extend(value if isinstance(value, list) else [value])
    for value in candidates:
        if isinstance(value, str):
            found = parse_taxpayer_id(value)
            if found:
                return found
    return None
