"""Validation of a Web eID authentication token: parse it once, then a short ordered list of
small checks.

Each check either passes or raises one error with its own stable code (``verifier.errors``).
The order is the Web eID libraries' order, so that a token with several defects is refused for
the same reason they would give:

1. structure (``parse_auth_token``): a JSON object within size limits, every required field a
   non-empty string;
2. format: ``web-eid:1`` or ``web-eid:1.x``;
3. certificate: base64 of an X.509 certificate (read leniently: some cards' certificates are not
   strict DER), parsed once and kept by its SHA-256;
4. purpose: keyUsage digitalSignature; clientAuth when there is an extendedKeyUsage;
5. policies: none of the disallowed certificate policies;
6. validity: the certificate, then the trust anchor that issued it, at the validation time;
7. chain and revocation: a path to a trust anchor (pyhanko-certvalidator), with the CRL
   status, or the answer of an OCSP responder (``ocsp``), as the revocation setting says (the
   only check that waits on I/O);
8. algorithm: one of ES/PS/RS 256/384/512;
9. signature: over the Web eID signed data (``common.webeid.signed_data``) with the
   certificate's key.

The nonce is not checked here: the login flow consumes it from the challenge store first (one
use, five minutes) and passes its value in, so a replayed or foreign nonce never gets this far.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import (
    CRLValidationError,
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    OCSPValidationError,
    PathBuildingError,
    PathError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.taxpayer_id import TaxpayerId, taxpayer_id_in_name
from cert_agent.common.webeid import signed_data
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
    CertStatusUnknown,
    CertUntrusted,
    OcspResponseInvalid,
    RevocationUnavailable,
    SignatureInvalid,
)
from cert_agent.verifier.errors import UnsupportedAlgorithm as UnsupportedAlgorithmError
from cert_agent.verifier.ocsp import OcspSettings, check_ocsp

log = logging.getLogger("cert_agent.verifier.validation")

MAX_TOKEN_BYTES = 16 * 1024
FACTS_CACHE_SIZE = 4096  # parsed certificates kept, oldest dropped first
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


@dataclass(frozen=True)
class ValidatedAuthToken:
    certificate_der: bytes
    subject: str
    subject_cn: str | None
    taxpayer_id: TaxpayerId | None
    algorithm: str


@dataclass(frozen=True)
class ParsedAuthToken:
    """A token that passed the structure check: its four required fields, as sent."""

    format: str
    certificate: str  # base64 DER ("unverifiedCertificate")
    algorithm: str
    signature: str  # base64


def parse_auth_token(token: Any) -> ParsedAuthToken:
    """Check 1, structure: a JSON object within MAX_TOKEN_BYTES whose required fields are
    non-empty strings. Other fields (``appVersion``, extensions) are ignored."""
    if not isinstance(token, dict):
        raise AuthTokenMalformed("the token is not a JSON object")
    size = sum(len(str(k)) + len(v) if isinstance(v, str) else len(json.dumps(v)) for k, v in token.items())
    if size > MAX_TOKEN_BYTES:
        raise AuthTokenMalformed(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
    fields = {}
    for name in ("format", "unverifiedCertificate", "algorithm", "signature"):
        value = token.get(name)
        if not isinstance(value, str) or not value:
            raise AuthTokenMalformed(f"{name}: a non-empty string is required")
        fields[name] = value
    return ParsedAuthToken(fields["format"], fields["unverifiedCertificate"], fields["algorithm"], fields["signature"])


@dataclass(frozen=True)
class CertificateFacts:
    """What the checks need of one certificate, parsed once and kept by its SHA-256."""

    der: bytes
    cert: asn1_x509.Certificate
    key_usage: frozenset[str] | None
    extended_key_usage: frozenset[str] | None
    policies: frozenset[str]
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: bytes  # the issuer's normalised name, to find its trust anchor without comparing names
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
            der=der,
            cert=cert,
            key_usage=frozenset(usage.native) if usage is not None else None,
            extended_key_usage=frozenset(extended.native) if extended is not None else None,
            policies=frozenset(p["policy_identifier"].dotted for p in policies)
            if policies is not None
            else frozenset(),
            not_before=validity["not_before"].native,
            not_after=validity["not_after"].native,
            issuer=cert.issuer.hashable.encode(),
            public_key=_public_key(cert),
            subject=cert.subject.human_friendly,
            subject_cn=cn if isinstance(cn, str) else None,
            taxpayer_id=_taxpayer_id(der),
        )


# --- the checks after the structure, in order (3, the certificate, is AuthTokenValidator's) ------


def check_format(token: ParsedAuthToken) -> None:
    if token.format != "web-eid:1" and not token.format.startswith("web-eid:1."):
        raise AuthTokenBadFormat(token.format[:40])


def check_purpose(certificate: CertificateFacts) -> None:
    if certificate.key_usage is None or "digital_signature" not in certificate.key_usage:
        raise CertBadKeyUsage()
    if certificate.extended_key_usage is not None and "client_auth" not in certificate.extended_key_usage:
        raise CertBadEku()


def check_policies(certificate: CertificateFacts, disallowed_policies: frozenset[str]) -> None:
    disallowed = certificate.policies & disallowed_policies
    if disallowed:
        raise CertDisallowedPolicy(min(disallowed))


def check_validity(
    certificate: CertificateFacts, anchor_validity: dict[bytes, tuple[dt.datetime, dt.datetime]], at: dt.datetime
) -> None:
    """The certificate, then the trust anchor that issued it (found by its normalised name,
    ``anchor_validities``), are valid at ``at``."""
    _within(certificate.not_before, certificate.not_after, at, "certificate")
    issuer = anchor_validity.get(certificate.issuer)
    if issuer is not None:
        _within(*issuer, at, "trust anchor")


def anchor_validities(anchors: Iterable[asn1_x509.Certificate]) -> dict[bytes, tuple[dt.datetime, dt.datetime]]:
    """Each trust anchor's validity by its normalised subject name (compared as bytes, once)."""
    validities = {}
    for anchor in anchors:
        validity = anchor["tbs_certificate"]["validity"]
        validities[anchor.subject.hashable.encode()] = (validity["not_before"].native, validity["not_after"].native)
    return validities


def check_algorithm(token: ParsedAuthToken) -> SignatureAlgorithm:
    try:
        return SignatureAlgorithm(token.algorithm)
    except ValueError:
        raise UnsupportedAlgorithmError(repr(token.algorithm[:20])) from None


def check_signature(
    token: ParsedAuthToken, certificate: CertificateFacts, algorithm: SignatureAlgorithm, origin: str, nonce: str
) -> None:
    signature = _base64(token.signature, "signature")
    hash_factory = _HASHES[algorithm.hash_name]
    data = signed_data(origin, nonce, algorithm)
    public_key = certificate.public_key
    try:
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
        elif public_key is None:
            raise SignatureInvalid("the certificate's public key cannot be used")
        else:
            raise SignatureInvalid(f"{algorithm.value} does not fit the certificate's key")
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise SignatureInvalid() from None


class AuthTokenValidator:
    """Validates tokens for one relying party (``settings``); keeps parsed certificates and
    validated paths between calls."""

    def __init__(self, settings: ValidatorSettings, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._anchors = [asn1_x509.Certificate.load(der) for der in settings.trust_anchors]
        self._anchor_validity = anchor_validities(self._anchors)
        self._intermediates = [asn1_x509.Certificate.load(der) for der in settings.intermediates]
        self._path_cache: dict[bytes, tuple[float, AuthTokenInvalid | None]] = {}
        self.ocsp_status = OcspStatus()  # the last exchange with the OCSP responder, for health
        self._facts: dict[bytes, CertificateFacts] = {}

    async def validate(self, auth_token: Any, nonce: str, at: dt.datetime | None = None) -> ValidatedAuthToken:
        """Run the checks in order on ``auth_token`` (the JSON object the agent made) for the
        challenge ``nonce``; the first failure is raised, else the login identity. ``at`` pins
        the validation time (support, test vectors): then no path is cached."""
        moment = at or self._clock()
        parsed = parse_auth_token(auth_token)
        check_format(parsed)
        certificate = self.check_certificate(parsed)
        check_purpose(certificate)
        check_policies(certificate, self.settings.disallowed_policies)
        check_validity(certificate, self._anchor_validity, moment)
        await self.check_chain(certificate, moment, cache=at is None)
        algorithm = check_algorithm(parsed)
        check_signature(parsed, certificate, algorithm, self.settings.origin, nonce)
        return ValidatedAuthToken(
            certificate_der=certificate.der,
            subject=certificate.subject,
            subject_cn=certificate.subject_cn,
            taxpayer_id=certificate.taxpayer_id,
            algorithm=algorithm.value,
        )

    def check_certificate(self, token: ParsedAuthToken) -> CertificateFacts:
        """Check 3: the certificate decodes (parsed once per certificate, then kept)."""
        der = _base64(token.certificate, "unverifiedCertificate")
        key = hashlib.sha256(der).digest()
        facts = self._facts.get(key)
        if facts is None:
            try:
                facts = CertificateFacts.parse(der)
            except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
                raise AuthTokenMalformed(f"unverifiedCertificate: {type(exc).__name__}") from None
            if len(self._facts) >= FACTS_CACHE_SIZE:
                self._facts.pop(next(iter(self._facts)))
            self._facts[key] = facts
        return facts

    async def check_chain(self, certificate: CertificateFacts, at: dt.datetime, *, cache: bool) -> None:
        """Check 7: a path to a trust anchor, unrevoked. A result (good or bad) is kept for
        ``path_cache_seconds`` unless the time is pinned."""
        if not cache:
            await self._validate_path(certificate, at)
            return
        key = hashlib.sha256(certificate.der).digest()
        cached = self._path_cache.get(key)
        if cached and cached[0] > time.monotonic():
            if cached[1] is not None:
                raise cached[1]
            return
        error: AuthTokenInvalid | None = None
        try:
            await self._validate_path(certificate, at)
        except AuthTokenInvalid as exc:
            error = exc
        self._path_cache[key] = (time.monotonic() + self.settings.path_cache_seconds, error)
        if error is not None:
            raise error

    async def _validate_path(self, certificate: CertificateFacts, at: dt.datetime) -> None:
        """The path by pyhanko-certvalidator, revocation by its CRLs; or, with OCSP configured,
        the path alone and then the responder's answer about the taxpayer certificate (the
        trust anchor should then be the issuing CA, as the Web eID validators recommend)."""
        ocsp_settings = self.settings.ocsp if self.settings.revocation != "off" else None
        context = ValidationContext(
            trust_roots=self._anchors,
            other_certs=self._intermediates,
            moment=at,
            revocation_mode="none" if ocsp_settings else REVOCATION_MODES[self.settings.revocation],
            crls=[] if ocsp_settings else list(self.settings.crls),
            allow_fetching=self.settings.allow_fetching and self.settings.revocation != "off" and not ocsp_settings,
        )
        validator = CertificateValidator(
            certificate.cert, intermediate_certs=self._intermediates, validation_context=context
        )
        try:
            path = await validator.async_validate_path()
        except RevokedError:
            raise CertRevoked() from None
        except (InsufficientRevinfoError, CRLValidationError, OCSPValidationError) as exc:
            raise RevocationUnavailable(type(exc).__name__) from None
        except ExpiredError:
            raise CertExpired("a certificate of the chain") from None
        except NotYetValidError:
            raise CertNotYetValid("a certificate of the chain") from None
        except PathBuildingError:
            raise CertUntrusted("no path to a trust anchor") from None
        except (ValidationError, PathError) as exc:
            raise CertUntrusted(type(exc).__name__) from None
        if ocsp_settings is not None:
            await self._check_ocsp(certificate, path, ocsp_settings, at)

    async def _check_ocsp(
        self, certificate: CertificateFacts, path: ValidationPath, settings: OcspSettings, at: dt.datetime
    ) -> None:
        issuer = path.find_issuing_authority(path.leaf)
        issuer_der = issuer.certificate.dump() if isinstance(issuer, AuthorityWithCert) else None
        try:
            if issuer_der is None:
                raise RevocationUnavailable("the issuer's certificate is needed to ask OCSP")
            leaf = x509.load_der_x509_certificate(certificate.der)
            await check_ocsp(leaf, x509.load_der_x509_certificate(issuer_der), settings, at)
            self.ocsp_status.answered(at)
        except (CertRevoked, CertStatusUnknown):
            self.ocsp_status.answered(at)  # the responder answered: that the answer is "no" is the token's fault
            raise
        except ValueError:
            self.ocsp_status.failed(at, "certificate unreadable")
            raise RevocationUnavailable("the certificate cannot be read for OCSP") from None
        except (RevocationUnavailable, OcspResponseInvalid) as exc:
            self.ocsp_status.failed(at, exc.code)
            if isinstance(exc, OcspResponseInvalid) or self.settings.revocation != "fail-open":
                raise
            log.warning("fail-open: login allowed without a revocation answer (%s)", exc.describe())


@dataclass
class OcspStatus:
    """When the responder last answered, and when and why it last did not."""

    last_answer_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    last_failure: str = ""

    def answered(self, at: dt.datetime) -> None:
        self.last_answer_at = at

    def failed(self, at: dt.datetime, reason: str) -> None:
        self.last_failure_at, self.last_failure = at, reason

    @property
    def failing(self) -> bool:
        """The last exchange failed."""
        return self.last_failure_at is not None and (
            self.last_answer_at is None or self.last_failure_at > self.last_answer_at
        )


def _base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a string that is not ASCII
        raise AuthTokenMalformed(f"{field}: not base64") from None


def _public_key(cert: asn1_x509.Certificate) -> Any:
    try:
        return load_der_public_key(cert.public_key.dump())
    except (ValueError, UnsupportedAlgorithm):
        return None


def _taxpayer_id(der: bytes) -> TaxpayerId | None:
    """The taxpayer ID in the subject (``common.taxpayer_id``); none when cryptography cannot
    read a leniently encoded certificate (such a certificate logs no taxpayer in)."""
    try:
        return taxpayer_id_in_name(x509.load_der_x509_certificate(der).subject)
    except ValueError:
        return None


def _within(not_before: dt.datetime, not_after: dt.datetime, at: dt.datetime, what: str) -> None:
    if at < not_before:
        raise CertNotYetValid(what)
    if at > not_after:
        raise CertExpired(what)
