"""Checks 2 and 4 to 9, each a small function raising its own error (3 and 7 are
``AuthTokenValidator``'s: they keep caches)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import signed_data
from cert_agent.verifier import sm2
from cert_agent.verifier.errors import (
    AlgorithmKeyMismatch,
    AuthTokenBadFormat,
    CertBadEku,
    CertBadKeyUsage,
    CertDisallowedPolicy,
    CertExpired,
    CertNotYetValid,
    SignatureInvalid,
    Sm2WrongId,
)
from cert_agent.verifier.errors import UnsupportedAlgorithm as UnsupportedAlgorithmError
from cert_agent.verifier.validation.parsing import CertificateFacts, ParsedAuthToken, decode_base64

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


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
    """Check 8: an algorithm this verifier checks (ES/PS/RS 256/384/512, and SM2SM3 where the
    system's libcrypto has SM2)."""
    try:
        algorithm = SignatureAlgorithm(token.algorithm)
    except ValueError:
        raise UnsupportedAlgorithmError(repr(token.algorithm[:20])) from None
    if algorithm.hash_name not in _HASHES and not (algorithm is SignatureAlgorithm.SM2SM3 and sm2.available()):
        raise UnsupportedAlgorithmError(algorithm.value)
    return algorithm


def check_signature(
    token: ParsedAuthToken, certificate: CertificateFacts, algorithm: SignatureAlgorithm, origin: str, nonce: str
) -> None:
    signature = decode_base64(token.signature, "signature")
    if algorithm is SignatureAlgorithm.SM2SM3 or certificate.is_sm2:
        check_sm2_signature(certificate, algorithm, signed_data(origin, nonce, algorithm), signature)
        return
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


def check_sm2_signature(
    certificate: CertificateFacts, algorithm: SignatureAlgorithm, data: bytes, signature: bytes
) -> None:
    """Check 9 for SM2: SM2SM3 with an SM2 key, at GM/T 0009's default ID. A signature that
    verifies only with the empty ID (OpenSSL 3's default) is told apart: SM2_WRONG_ID."""
    if not (algorithm is SignatureAlgorithm.SM2SM3 and certificate.is_sm2):
        raise AlgorithmKeyMismatch(f"{algorithm.value} with {'an SM2' if certificate.is_sm2 else 'a non-SM2'} key")
    if sm2.verify(certificate.spki, data, signature):
        return
    if sm2.verify(certificate.spki, data, signature, user_id=b""):
        raise Sm2WrongId()
    raise SignatureInvalid()


def _within(not_before: dt.datetime, not_after: dt.datetime, at: dt.datetime, what: str) -> None:
    if at < not_before:
        raise CertNotYetValid(what)
    if at > not_after:
        raise CertExpired(what)
