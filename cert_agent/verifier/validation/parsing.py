"""Check 1 (the structure) and what later checks read: the parsed token, the parsed certificate,
and the identity a valid token yields."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_public_key

from cert_agent.common.taxpayer_id import TaxpayerId, taxpayer_id_in_name
from cert_agent.verifier import sm2
from cert_agent.verifier.errors import (
    AuthTokenMalformed,
)

MAX_TOKEN_BYTES = 16 * 1024


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
    spki: bytes  # the SubjectPublicKeyInfo, DER (SM2 keys are checked from it, see verifier/sm2.py)
    is_sm2: bool  # id-ecPublicKey on the SM2 curve
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
            public_key=public_key_of(cert),
            spki=cert.public_key.dump(),
            is_sm2=is_sm2_key(cert),
            subject=cert.subject.human_friendly,
            subject_cn=cn if isinstance(cn, str) else None,
            taxpayer_id=taxpayer_id_of(der),
        )


def decode_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a string that is not ASCII
        raise AuthTokenMalformed(f"{field}: not base64") from None


def is_sm2_key(cert: asn1_x509.Certificate) -> bool:
    return sm2.is_sm2_key(cert.public_key)


def public_key_of(cert: asn1_x509.Certificate) -> Any:
    try:
        return load_der_public_key(cert.public_key.dump())
    except (ValueError, UnsupportedAlgorithm):
        return None


def taxpayer_id_of(der: bytes) -> TaxpayerId | None:
    """The taxpayer ID in the subject (``common.taxpayer_id``); none when cryptography cannot
    read a leniently encoded certificate (such a certificate logs no taxpayer in)."""
    try:
        return taxpayer_id_in_name(x509.load_der_x509_certificate(der).subject)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion: an X.509 version past v3
        return None
