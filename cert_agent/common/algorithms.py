"""Signature algorithms by the names the Web eID token carries (JOSE's, ES256 ... RS512, and
SM2SM3 for SM2 with SM3, which JOSE does not name).

Plain data, importable without any driver: the daemon's main process and the verifier use it;
each driver maps an algorithm to what its library does (``drivers/pkcs11/mechanisms.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class KeyType(StrEnum):
    RSA = "RSA"
    EC = "EC"  # ECDSA on the NIST curves
    SM2 = "SM2"  # an EC key on the SM2 curve, used with the SM2 signature scheme (GM/T 0003)


class Padding(StrEnum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"
    ECDSA = "ecdsa"
    SM2 = "sm2"  # SM2 over SM3(Z || M) with the GM/T 0009 default ID; DER SEQUENCE {r, s}


class SignatureAlgorithm(StrEnum):
    """A signature algorithm by the name the auth token carries (JOSE's, where JOSE names it).
    What each one means is the table ``_SPECS`` below, not the shape of its name, so an algorithm
    JOSE does not name (SM2 with SM3) is one more row."""

    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    SM2SM3 = "SM2SM3"  # no JOSE name exists for the SM2 signature scheme (docs/protocol.md)

    @property
    def spec(self) -> AlgorithmSpec:
        return _SPECS[self]

    @property
    def hash_name(self) -> str:
        """The hashlib name of the algorithm's hash (sha256, sha384, sha512)."""
        return self.spec.hash_name

    @property
    def hash_size(self) -> int:
        return self.spec.hash_size

    @property
    def padding(self) -> Padding:
        return self.spec.padding

    @property
    def key_type(self) -> KeyType:
        return self.spec.key_type


@dataclass(frozen=True)
class AlgorithmSpec:
    key_type: KeyType
    padding: Padding
    hash_name: str
    hash_size: int  # bytes


_SPECS = {
    SignatureAlgorithm.ES256: AlgorithmSpec(KeyType.EC, Padding.ECDSA, "sha256", 32),
    SignatureAlgorithm.ES384: AlgorithmSpec(KeyType.EC, Padding.ECDSA, "sha384", 48),
    SignatureAlgorithm.ES512: AlgorithmSpec(KeyType.EC, Padding.ECDSA, "sha512", 64),
    SignatureAlgorithm.PS256: AlgorithmSpec(KeyType.RSA, Padding.PSS, "sha256", 32),
    SignatureAlgorithm.PS384: AlgorithmSpec(KeyType.RSA, Padding.PSS, "sha384", 48),
    SignatureAlgorithm.PS512: AlgorithmSpec(KeyType.RSA, Padding.PSS, "sha512", 64),
    SignatureAlgorithm.RS256: AlgorithmSpec(KeyType.RSA, Padding.PKCS1V15, "sha256", 32),
    SignatureAlgorithm.RS384: AlgorithmSpec(KeyType.RSA, Padding.PKCS1V15, "sha384", 48),
    SignatureAlgorithm.RS512: AlgorithmSpec(KeyType.RSA, Padding.PKCS1V15, "sha512", 64),
    SignatureAlgorithm.SM2SM3: AlgorithmSpec(KeyType.SM2, Padding.SM2, "sm3", 32),
}

SM2_DEFAULT_ID = b"1234567812345678"  # GM/T 0009's default user ID, in every SM2 signature here


def default_algorithm(key_type: str, key_size: int) -> SignatureAlgorithm:
    """What a key signs with when the caller does not choose: the curve's own hash for EC
    (ES256 for P-256, ES384 for P-384, ES512 for P-521), SM2 with SM3 for SM2, RS256 for RSA."""
    if key_type == KeyType.SM2.value:
        return SignatureAlgorithm.SM2SM3
    if key_type == KeyType.EC.value:
        if key_size > 384:
            return SignatureAlgorithm.ES512
        return SignatureAlgorithm.ES384 if key_size > 256 else SignatureAlgorithm.ES256
    return SignatureAlgorithm.RS256
