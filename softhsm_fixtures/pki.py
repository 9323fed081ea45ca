"""A test PKI modelled on the tax authority's: root CA -> issuing CA -> taxpayer certificates.

Everything is generated when fixtures are built; no private key is ever committed. The CA keys
live in memory (and, for the demo, in the fixture directory, never in the repository).
End-entity certificates are issued for public keys that were generated on a token, so the
taxpayer's private key never leaves SoftHSM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_PRIVATE_KEY = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PUBLIC_KEY = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

CRL_URL = "http://crl.etax.test/ca/tax-test-issuing-ca.crl"  # .test is reserved: never resolves
ONE_DAY = dt.timedelta(days=1)


@dataclass
class CertificateAuthority:
    name: x509.Name
    key: CA_PRIVATE_KEY
    certificate: x509.Certificate
    revoked: list[tuple[int, dt.datetime]] = field(default_factory=list)

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Subject:
    """Whom a taxpayer certificate names: the organisation (CN) and its taxpayer ID."""

    common_name: str
    taxpayer_id: str
    organization: str | None = None

    def name(self) -> x509.Name:
        attributes = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "山东省"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "青岛市"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization or self.common_name),
            x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, self.taxpayer_id),
        ]
        return x509.Name(attributes)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "国家税务总局（测试）"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    name: x509.Name,
    public_key: PUBLIC_KEY,
    issuer: x509.Name,
    issuer_key: CA_PRIVATE_KEY,
    now: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 30 * ONE_DAY)
        .not_valid_after(now + 3650 * ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def make_root(common_name: str, now: dt.datetime) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP384R1())
    name = _ca_name(common_name)
    cert = _ca_certificate(name, key.public_key(), name, key, now, path_length=1)
    return CertificateAuthority(name, key, cert)


def make_intermediate(common_name: str, root: CertificateAuthority, now: dt.datetime) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _ca_name(common_name)
    cert = _ca_certificate(name, key.public_key(), root.name, root.key, now, path_length=0)
    return CertificateAuthority(name, key, cert)


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime


def issue_end_entity(
    ca: CertificateAuthority,
    subject: Subject,
    public_key: PUBLIC_KEY,
    validity: Validity,
    *,
    digital_signature: bool = True,
) -> x509.Certificate:
    """A taxpayer's login certificate: digitalSignature (+ nonRepudiation), EKU clientAuth,
    the CRL distribution point of the issuing CA."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name())
        .issuer_name(ca.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(CRL_URL)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    )
    return builder.sign(ca.key, hashes.SHA256())


def make_crl(ca: CertificateAuthority, now: dt.datetime) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.name)
        .last_update(now - ONE_DAY)
        .next_update(now + 7 * ONE_DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    for serial, when in ca.revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def make_ocsp_responder(
    ca: CertificateAuthority, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A responder certificate the CA authorises to sign OCSP answers about its certificates
    (extendedKeyUsage id-kp-OCSPSigning, RFC 6960 4.2.2.2), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "国家税务总局（测试）"),
            x509.NameAttribute(NameOID.COMMON_NAME, "国家税务总局测试OCSP响应器"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - ONE_DAY)
        .not_valid_after(now + 365 * ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate, key
