"""The objects on a PKCS#11 token the agent uses: certificates, and the private key beside each.

A certificate and its key share CKA_ID (the ``cert_id`` the protocol carries, in hex).
"""

from __future__ import annotations

import logging
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.certificate import parse_certificate
from cert_agent.drivers.errors import (
    CertificateNotFound,
    CertificateUnparsable,
    MechanismNotSupported,
    PrivateKeyNotFound,
)
from cert_agent.drivers.models import Token, TokenCertificate

log = logging.getLogger("cert_agent.pkcs11")


def certificates(session: Any, token: Token) -> list[TokenCertificate]:
    """Every X.509 certificate object of the session's token, parsed, in CKA_ID order."""
    found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))
    return sorted((_certificate(session, token, c) for c in found), key=lambda c: c.object_id)


def private_key(session: Any, cert_id: bytes, algorithm: SignatureAlgorithm) -> Any:
    """The private key sharing ``cert_id`` of the type ``algorithm`` needs, or why there is none."""
    key_type = KeyType.EC if algorithm.key_type.value == "EC" else KeyType.RSA
    keys = list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: cert_id, Attribute.KEY_TYPE: key_type}
        )
    )
    if keys:
        return keys[0]
    # Why not: no key of that type, no key at all, or not even the certificate.
    if _objects(session, ObjectClass.PRIVATE_KEY, cert_id):
        raise MechanismNotSupported(f"{algorithm.value} needs a CKK_{key_type.name} key")
    if _objects(session, ObjectClass.CERTIFICATE, cert_id):
        raise PrivateKeyNotFound(cert_id.hex())
    raise CertificateNotFound(cert_id.hex())


def _certificate(session: Any, token: Token, certificate: Any) -> TokenCertificate:
    der = bytes(certificate[Attribute.VALUE] or b"")
    object_id = bytes(certificate[Attribute.ID] or b"")
    label = _attribute(certificate, Attribute.LABEL) or ""
    has_key = bool(_objects(session, ObjectClass.PRIVATE_KEY, object_id)) or bool(
        _objects(session, ObjectClass.PUBLIC_KEY, object_id)
    )
    try:
        info, error = parse_certificate(der), None
    except CertificateUnparsable as exc:
        info, error = None, exc
        log.warning("certificate %s on token %s is unparsable", object_id.hex(), token.serial)
    return TokenCertificate(
        token=token,
        object_id=object_id,
        object_label=str(label),
        der=der,
        has_private_key=has_key,
        info=info,
        error=error,
    )


def _objects(session: Any, object_class: ObjectClass, object_id: bytes) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: object_class, Attribute.ID: object_id}))


def _attribute(found: Any, attribute: Attribute) -> Any:
    """An optional attribute's value, or None where the object has none."""
    try:
        return found[attribute]
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
        return None
