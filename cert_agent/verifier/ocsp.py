"""OCSP: ask a responder whether a taxpayer certificate is revoked, and believe only an answer
that is for this certificate, fresh, signed by someone entitled to answer and (when the
responder echoes one) carrying our nonce.

Who may sign the answer:
- a *designated* responder certificate configured by the operator (trusted as configured, as
  the Web eID validators' "designated OCSP service"), or else
- the certificate's issuer itself, or a responder certificate the issuer signed for it
  (extendedKeyUsage id-kp-OCSPSigning, valid now) sent inside the response (RFC 6960 4.2.2.2).

Signatures are RSA, ECDSA or SM2-with-SM3 (an SM2 responder, checked with the system's libcrypto
at GM/T 0009's default ID, ``verifier/sm2.py``); an SM2 key with another algorithm, or the
reverse, signs nothing.

Failures come in two kinds. *No answer* (no responder URL, connection refused, time-out, an
HTTP error, a "tryLater" status) is ``RevocationUnavailable``: the revocation setting decides
(fail-closed refuses the login, fail-open lets it through and logs it). A *bad answer* (wrong
signer, for another certificate, stale, from the future, a nonce that is not ours) is
``OcspResponseInvalid`` and always refuses: it is what a forged or replayed answer looks like.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

import aiohttp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from cert_agent.verifier import sm2
from cert_agent.verifier.errors import CertRevoked, CertStatusUnknown, OcspResponseInvalid, RevocationUnavailable

log = logging.getLogger("cert_agent.verifier.ocsp")
NONCE_BYTES = 32
# One request per connection: simple responders (openssl ocsp among them) serve one at a time.
_REQUEST_HEADERS = {"Content-Type": "application/ocsp-request", "Connection": "close"}


@dataclass(frozen=True)
class OcspSettings:
    # Defaults as the Web eID validators': 15 minutes of clock skew, answers at most 2 minutes old.
    url: str = ""  # the responder to ask; empty: the one named in the certificate (AIA)
    responder: x509.Certificate | None = None  # a designated responder, trusted as configured
    timeout: float = 5.0  # seconds for the whole exchange
    allowed_skew: float = 900.0  # seconds a responder's clock may be ahead or behind ours
    max_age: float = 120.0  # seconds since thisUpdate that an answer is still believed
    nonce: bool = True  # send a nonce (checked when the responder echoes it)


async def check_ocsp(
    certificate: x509.Certificate, issuer: x509.Certificate, settings: OcspSettings, now: dt.datetime
) -> None:
    """Return when the responder says "good"; else raise (see the module's docstring)."""
    url = settings.url or _responder_url(certificate)
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())  # RFC 5019's CertID
    nonce = secrets.token_bytes(NONCE_BYTES) if settings.nonce else None
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    request = builder.build()
    answer = await _post(url, request.public_bytes(Encoding.DER), settings.timeout)
    try:
        response = ocsp.load_der_ocsp_response(answer)
    except ValueError:
        raise OcspResponseInvalid("not an OCSP response") from None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RevocationUnavailable(f"OCSP responder answered {response.response_status.name}")
    check_signer(response, issuer, settings.responder, now)
    single = _single_response_for(response, request)
    check_times(single.this_update_utc, single.next_update_utc, now, settings)
    check_nonce(response, nonce)
    if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        raise CertRevoked()
    if single.certificate_status is ocsp.OCSPCertStatus.UNKNOWN:
        raise CertStatusUnknown()


def check_signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, designated: x509.Certificate | None, now: dt.datetime
) -> None:
    """The answer is signed by the designated responder if one is configured, else by the
    issuer or a responder certificate the issuer authorised."""
    if designated is not None:
        candidates = [designated]
    else:
        candidates = [issuer] + [c for c in response.certificates if _authorised_by(c, issuer, now)]
    for signer in candidates:
        if _signed_by(response, signer):
            return
    raise OcspResponseInvalid("not signed by the issuer or a responder it authorised")


def check_times(
    this_update: dt.datetime, next_update: dt.datetime | None, now: dt.datetime, settings: OcspSettings
) -> None:
    skew = dt.timedelta(seconds=settings.allowed_skew)
    if this_update > now + skew:
        raise OcspResponseInvalid("thisUpdate is in the future")
    if this_update < now - skew - dt.timedelta(seconds=settings.max_age):
        raise OcspResponseInvalid("the answer is stale")
    if next_update is not None and next_update < now - skew:
        raise OcspResponseInvalid("nextUpdate has passed")


def check_nonce(response: ocsp.OCSPResponse, sent: bytes | None) -> None:
    """A responder that echoes a nonce must echo ours; one that supports none is accepted,
    its answer's age being bounded by ``max_age``."""
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return
    if sent is not None and echoed != sent:
        raise OcspResponseInvalid("the nonce is not the one sent")


def _responder_url(certificate: x509.Certificate) -> str:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        raise RevocationUnavailable("no OCSP responder is configured or named in the certificate") from None
    for description in access:
        if description.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            description.access_location, x509.UniformResourceIdentifier
        ):
            return description.access_location.value
    raise RevocationUnavailable("no OCSP responder is configured or named in the certificate")


async def _post(url: str, body: bytes, timeout: float) -> bytes:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, data=body, headers=_REQUEST_HEADERS) as reply,
        ):
            if reply.status != 200:
                raise RevocationUnavailable(f"OCSP responder answered HTTP {reply.status}")
            return await reply.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("OCSP responder %s did not answer: %s", url, type(exc).__name__)
        raise RevocationUnavailable(f"OCSP responder did not answer ({type(exc).__name__})") from None


def _single_response_for(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> ocsp.OCSPSingleResponse:
    for single in response.responses:
        if (
            single.serial_number == request.serial_number
            and single.issuer_key_hash == request.issuer_key_hash
            and single.issuer_name_hash == request.issuer_name_hash
        ):
            return single
    raise OcspResponseInvalid("the answer is about another certificate")


def _authorised_by(candidate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime) -> bool:
    try:
        usages = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if _is_sm2(issuer) or _is_sm2_signature(candidate.signature_algorithm_oid):
            signed = candidate.issuer == issuer.subject and _sm2_signed(
                candidate.signature, candidate.tbs_certificate_bytes, candidate.signature_algorithm_oid, issuer
            )
            if not signed:
                return False
        else:
            candidate.verify_directly_issued_by(issuer)
    except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return (
        ExtendedKeyUsageOID.OCSP_SIGNING in usages
        and candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc
    )


def _signed_by(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    if _is_sm2(signer) or _is_sm2_signature(response.signature_algorithm_oid):
        return _sm2_signed(response.signature, response.tbs_response_bytes, response.signature_algorithm_oid, signer)
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


# --- SM2: pyca/cryptography reads SM2 certificates and responses, but not their keys ----------


def _is_sm2(certificate: x509.Certificate) -> bool:
    return sm2.is_sm2_key(asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER)).public_key)


def _is_sm2_signature(oid: x509.ObjectIdentifier) -> bool:
    return oid.dotted_string == sm2.SM2_WITH_SM3


def _sm2_signed(signature: bytes, tbs: bytes, oid: x509.ObjectIdentifier, signer: x509.Certificate) -> bool:
    """SM2-with-SM3 by an SM2 key, at GM/T 0009's default ID; any other mix is not signed."""
    if not (_is_sm2_signature(oid) and _is_sm2(signer)):
        return False
    public_key_info = asn1_x509.Certificate.load(signer.public_bytes(Encoding.DER)).public_key.dump()
    return sm2.verify(public_key_info, tbs, signature)
