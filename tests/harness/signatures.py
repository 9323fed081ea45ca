"""Independent signature checks for tests: pyca/cryptography only, nothing of the project's."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HASHES: dict[str, Any] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def verify_signature(public_key: Any, signature: bytes, data: bytes, algorithm: str) -> None:
    """Raise InvalidSignature unless ``signature`` (JOSE algorithm ``algorithm``: ECDSA as raw
    r||s, PSS with salt = digest length, or PKCS#1 v1.5) signs ``data``."""
    hash_algorithm = HASHES[algorithm[2:]]()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        public_key.verify(der, data, ec.ECDSA(hash_algorithm))
        return
    assert isinstance(public_key, rsa.RSAPublicKey)
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
        if algorithm.startswith("PS")
        else padding.PKCS1v15()
    )
    public_key.verify(signature, data, pad, hash_algorithm)
