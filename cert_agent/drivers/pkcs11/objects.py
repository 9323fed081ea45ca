"""The objects on a PKCS#11 token the agent uses: certificates, and the private key beside each.

A certificate and its key share CKA_ID (the ``cert_id`` the protocol carries, in hex). A key of a
vendor-defined type (Chinese UKeys' SM2 keys: CKK_VENDOR_DEFINED + n), which python-pkcs11 cannot
represent, does not fail the token: its certificate is listed with KEY_UNUSABLE, and signing with
it is refused with the same code.
"""

from __future__ import annotations

import logging
from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.certificate import parse_certificate
from cert_agent.drivers.errors import (
    CertificateNotFound,
    CertificateUnparsable,
    KeyUnusable,
    MechanismNotSupported,
    PrivateKeyNotFound,
)
from cert_agent.drivers.models import Token, TokenCertificate
from cert_agent.drivers.pkcs11.library import Library, ReturnCode

log = logging.getLogger("cert_agent.pkcs11")


def certificates(
    session: Any, token: Token, lib: Library, usable_vendor_type: int | None = None
) -> list[TokenCertificate]:
    """Every X.509 certificate object of the session's token, parsed, in CKA_ID order.
    ``usable_vendor_type``: a vendor-defined key type the agent can sign with on this token (the
    media catalog's SM2 key type for the module); any other one marks its certificate unusable."""
    found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))
    listed = (_certificate(session, token, c, lib, usable_vendor_type) for c in found)
    return sorted(listed, key=lambda c: c.object_id)


def private_key(session: Any, lib: Library, cert_id: bytes, algorithm: SignatureAlgorithm) -> int:
    """The handle of the private key sharing ``cert_id`` of the type ``algorithm`` needs, or why
    there is none. One search names class, CKA_ID and key type; only a miss looks further."""
    if algorithm.key_type.value not in ("EC", "RSA"):
        raise MechanismNotSupported(f"{algorithm.value} over PKCS#11")  # SM2: vendors' own values only
    wanted = KeyType.EC if algorithm.key_type.value == "EC" else KeyType.RSA
    handle = lib.private_key(session, cert_id, int(wanted))
    if handle is not None:
        return handle
    key = _only_key(session, cert_id)
    key_type = key_type_of(key)
    if key_type is None:
        raise KeyUnusable(f"{cert_id.hex()}: a vendor-defined key type")
    if key_type is not wanted:
        raise MechanismNotSupported(f"{algorithm.value} needs a CKK_{wanted.name} key")
    return int(key.handle)  # a module whose search ignored CKA_KEY_TYPE


def sm2_private_key(session: Any, lib: Library, cert_id: bytes, key_type: int) -> int:
    """The handle of the private key sharing ``cert_id``, of the vendor's SM2 ``key_type`` (else why not)."""
    handle = lib.private_key(session, cert_id, key_type)
    if handle is not None:
        return handle
    key = _only_key(session, cert_id)
    if raw_key_type(lib, session, key) != key_type:
        raise MechanismNotSupported(f"SM2SM3 needs a key of type 0x{key_type:08X}")
    return int(key.handle)


def _only_key(session: Any, cert_id: bytes) -> Any:
    """The private key sharing ``cert_id`` of whatever type, or CertificateNotFound /
    PrivateKeyNotFound: why the typed search found none."""
    keys = _objects(session, ObjectClass.PRIVATE_KEY, cert_id)
    if not keys:
        if _objects(session, ObjectClass.CERTIFICATE, cert_id):
            raise PrivateKeyNotFound(cert_id.hex())
        raise CertificateNotFound(cert_id.hex())
    return keys[0]


def raw_key_type(lib: Library, session: Any, key: Any) -> int | None:
    """CKA_KEY_TYPE as a number, read past python-pkcs11's enum (None: it cannot be read)."""
    try:
        return lib.key_type(session, key)
    except ReturnCode:
        return None


def key_type_of(key: Any) -> KeyType | None:
    """The key's CKA_KEY_TYPE; None for a vendor-defined one (python-pkcs11 has no member for it)."""
    try:
        return KeyType(key[Attribute.KEY_TYPE])
    except ValueError:
        return None


def _certificate(
    session: Any, token: Token, certificate: Any, lib: Library, usable_vendor_type: int | None
) -> TokenCertificate:
    der = bytes(certificate[Attribute.VALUE] or b"")
    object_id = bytes(certificate[Attribute.ID] or b"")
    label = _attribute(certificate, Attribute.LABEL) or ""
    # Listed without a login: the private key may be hidden (CKA_PRIVATE), its public key is not.
    keys = _objects(session, ObjectClass.PRIVATE_KEY, object_id) or _objects(session, ObjectClass.PUBLIC_KEY, object_id)
    has_key = bool(keys)
    error: CertAgentError | None = None
    if keys and key_type_of(keys[0]) is None and raw_key_type(lib, session, keys[0]) != usable_vendor_type:
        error = KeyUnusable("a vendor-defined key type")
        log.warning("the key of certificate %s on token %s is of a vendor-defined type", object_id.hex(), token.serial)
    try:
        info = parse_certificate(der)
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
