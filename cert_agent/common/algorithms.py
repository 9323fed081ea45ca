"""Signature algorithms by their JOSE names, as the Web eID token carries them.

Plain data, importable without a PKCS#11 binding: the daemon's main process and the verifier use it; the
driver maps each algorithm to PKCS#11 mechanisms (``drivers/mechanisms.py``).
"""

from __future__ import annotations

from enum import StrEnum


class KeyType(StrEnum):
    RSA = "RSA"
    EC = "EC"


class Padding(StrEnum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"
    ECDSA = "ecdsa"


class SignatureAlgorithm(StrEnum):
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"

    @property
    def hash_name(self) -> str:
        """The hashlib name of the algorithm's hash: sha256, sha384 or sha512."""
        return f"sha{self.value[2:]}"

    @property
    def hash_size(self) -> int:
        return int(self.value[2:]) // 8

    @property
    def padding(self) -> Padding:
        return {"E": Padding.ECDSA, "P": Padding.PSS, "R": Padding.PKCS1V15}[self.value[0]]

    @property
    def key_type(self) -> KeyType:
        return KeyType.EC if self.padding is Padding.ECDSA else KeyType.RSA


def default_algorithm(key_type: str, key_size: int) -> SignatureAlgorithm:
    """What a key signs with when the caller does not choose: the curve's own hash for EC
    (ES256 for P-256, ES384 for P-384, ES512 for P-521), RS256 for RSA."""
    if key_type == KeyType.EC.value:
        if key_size > 384:
            return SignatureAlgorithm.ES512
        return SignatureAlgorithm.ES384 if key_size > 256 else SignatureAlgorithm.ES256
    return SignatureAlgorithm.RS256
