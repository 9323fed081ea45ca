"""SM2 signatures checked with the system's OpenSSL 3 libcrypto: a few calls through ctypes.

pyca/cryptography reads SM2 certificates but refuses their keys, and no PyPI package for SM2 is
well kept enough for a relying party (``../shared/research/sm2-skf.md``), so the verifier asks the
system's libcrypto, which has SM2 and SM3 in its default provider. The calls are the ones
OpenSSL's SM2(7) page gives for a verification with a user ID: ``EVP_PKEY_CTX_set1_id`` on the
key's context, ``EVP_MD_CTX_set_pkey_ctx``, ``EVP_DigestVerifyInit`` with SM3, ``EVP_DigestVerify``.
The ID is always given: OpenSSL 3 uses an empty one otherwise, not GM/T 0009's default.

``available()`` says whether the library can (the verifier refuses to start with an SM2 trust
anchor when it cannot); ``verify`` is True or False, never an exception, for any input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import cache

from asn1crypto import keys

from cert_agent.common.algorithms import SM2_DEFAULT_ID

SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM2_CURVE = "1.2.156.10197.1.301"
_c = ctypes.c_void_p
_size = ctypes.c_size_t


class _LibCrypto:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        signatures: dict[str, tuple[object, list[object]]] = {
            "OpenSSL_version_num": (ctypes.c_ulong, []),
            "d2i_PUBKEY": (_c, [_c, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]),
            "EVP_PKEY_is_a": (ctypes.c_int, [_c, ctypes.c_char_p]),
            "EVP_PKEY_free": (None, [_c]),
            "EVP_PKEY_CTX_new": (_c, [_c, _c]),
            "EVP_PKEY_CTX_free": (None, [_c]),
            "EVP_PKEY_CTX_set1_id": (ctypes.c_int, [_c, ctypes.c_char_p, ctypes.c_int]),
            "EVP_MD_CTX_new": (_c, []),
            "EVP_MD_CTX_free": (None, [_c]),
            "EVP_MD_CTX_set_pkey_ctx": (None, [_c, _c]),
            "EVP_sm3": (_c, []),
            "EVP_DigestVerifyInit": (ctypes.c_int, [_c, _c, _c, _c, _c]),
            "EVP_DigestVerify": (
                ctypes.c_int,
                [_c, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t],
            ),
            "ERR_clear_error": (None, []),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes

    def verify(self, spki_der: bytes, message: bytes, signature_der: bytes, user_id: bytes) -> bool:
        lib = self.lib
        cursor = ctypes.c_char_p(spki_der)
        key = lib.d2i_PUBKEY(None, ctypes.byref(cursor), len(spki_der))
        md = pkey_ctx = None
        try:
            if not key or lib.EVP_PKEY_is_a(key, b"SM2") != 1:
                return False
            md, pkey_ctx = lib.EVP_MD_CTX_new(), lib.EVP_PKEY_CTX_new(key, None)
            if not md or not pkey_ctx or lib.EVP_PKEY_CTX_set1_id(pkey_ctx, user_id, len(user_id)) != 1:
                return False
            lib.EVP_MD_CTX_set_pkey_ctx(md, pkey_ctx)
            if lib.EVP_DigestVerifyInit(md, None, lib.EVP_sm3(), None, key) != 1:
                return False
            return bool(lib.EVP_DigestVerify(md, signature_der, len(signature_der), message, len(message)) == 1)
        finally:
            if md:
                lib.EVP_MD_CTX_free(md)
            if pkey_ctx:
                lib.EVP_PKEY_CTX_free(pkey_ctx)  # the digest context does not own it
            if key:
                lib.EVP_PKEY_free(key)
            lib.ERR_clear_error()  # leave this thread's error queue as it was


_load_lock = threading.Lock()


@cache
def _libcrypto() -> _LibCrypto | None:
    with _load_lock:
        name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
        try:
            crypto = _LibCrypto(ctypes.CDLL(name))
        except (OSError, AttributeError):  # no libcrypto, or one without these calls (before 3.0)
            return None
        if crypto.lib.OpenSSL_version_num() < 0x30000000 or not crypto.lib.EVP_sm3():
            return None
        return crypto


def available() -> bool:
    """The system's libcrypto is OpenSSL 3 with SM2 and SM3."""
    return _libcrypto() is not None


def verify(spki_der: bytes, message: bytes, signature_der: bytes, user_id: bytes = SM2_DEFAULT_ID) -> bool:
    """Is ``signature_der`` (DER ``SEQUENCE {r, s}``) an SM2 signature of ``message`` by the key
    in ``spki_der`` (a SubjectPublicKeyInfo) with ``user_id``?"""
    crypto = _libcrypto()
    return crypto is not None and crypto.verify(spki_der, message, signature_der, user_id)


def is_sm2_key(public_key_info: keys.PublicKeyInfo) -> bool:
    """id-ecPublicKey on the SM2 curve (the one way SM2 keys are written in certificates)."""
    algorithm = public_key_info["algorithm"]
    parameters = algorithm["parameters"]
    return (
        algorithm["algorithm"].dotted == "1.2.840.10045.2.1"
        and getattr(parameters, "name", "") == "named"
        and parameters.chosen.dotted == SM2_CURVE
    )
