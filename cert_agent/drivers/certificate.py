"""What a certificate on a token says, parsed once with pyca/cryptography.

pyca/cryptography reads SM2 certificates but refuses their keys, so the key of a certificate is
told from its SubjectPublicKeyInfo (asn1crypto): id-ecPublicKey on the SM2 curve is an SM2 key.
"""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cert_agent.common.taxpayer_id import taxpayer_id_in_name
from cert_agent.drivers.errors import CertificateUnparsable
from cert_agent.drivers.models import CertificateInfo

_KEY_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
}


def parse_certificate(der: bytes) -> CertificateInfo:
    try:
        cert = x509.load_der_x509_certificate(der)
        return _describe(der, cert)
    except (ValueError, TypeError, KeyError, IndexError, x509.InvalidVersion) as exc:  # bad DER, a version past v3
        raise CertificateUnparsable(type(exc).__name__) from None


SM2_CURVE = "1.2.156.10197.1.301"


def _describe(der: bytes, cert: x509.Certificate) -> CertificateInfo:
    if _is_sm2(der):
        return _info(der, cert, "SM2", 256, "sm2")
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm:  # a key type the agent cannot use: listed, never signed with
        return _info(der, cert, "unsupported", 0, None)
    if isinstance(public_key, rsa.RSAPublicKey):
        return _info(der, cert, "RSA", public_key.key_size, None)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _info(der, cert, "EC", public_key.curve.key_size, public_key.curve.name)
    return _info(der, cert, "unsupported", 0, None)  # Ed25519, DSA, ...: listed, never signed with


def _is_sm2(der: bytes) -> bool:
    algorithm = asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"]["algorithm"]
    parameters = algorithm["parameters"]
    return (
        algorithm["algorithm"].dotted == "1.2.840.10045.2.1"
        and getattr(parameters, "name", "") == "named"
        and (parameters.chosen.dotted == SM2_CURVE)
    )


def _info(der: bytes, cert: x509.Certificate, key_type: str, key_size: int, curve: str | None) -> CertificateInfo:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertificateInfo(
        der=der,
        subject=cert.subject.rfc4514_string(),
        subject_cn=str(cn[0].value) if cn else None,
        issuer=cert.issuer.rfc4514_string(),
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        curve=curve,
        key_usage=_key_usage(cert),
        extended_key_usage=_extended_key_usage(cert),
        taxpayer_id=taxpayer_id_in_name(cert.subject),
    )


def _key_usage(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(name for name in _KEY_USAGE_NAMES if getattr(usage, name))


def _extended_key_usage(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usage)
