"""Signature algorithms (as JOSE names, the Web eID token uses them) and their PKCS#11 mechanisms.

For each algorithm there is a combined hash-and-sign mechanism (``CKM_SHA256_RSA_PKCS`` ...)
that the token may offer, and a raw one (``CKM_RSA_PKCS``, ``CKM_RSA_PKCS_PSS``, ``CKM_ECDSA``)
to fall back on with the hash computed on the host. SoftHSM2, for one, has no
``CKM_ECDSA_SHA256``. Both paths give the same signature format: raw ``r || s`` for ECDSA, the
plain RSA signature otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import PyKCS11
from asn1crypto.algos import DigestInfo


class KeyType(StrEnum):
    RSA = "RSA"
    EC = "EC"


class Padding(StrEnum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"
    ECDSA = "ecdsa"


@dataclass(frozen=True)
class HashSpec:
    name: str  # hashlib and asn1crypto name
    size: int
    ckm: int
    mgf: int


SHA256 = HashSpec("sha256", 32, PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256)
SHA384 = HashSpec("sha384", 48, PyKCS11.CKM_SHA384, PyKCS11.CKG_MGF1_SHA384)
SHA512 = HashSpec("sha512", 64, PyKCS11.CKM_SHA512, PyKCS11.CKG_MGF1_SHA512)


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
    def hash(self) -> HashSpec:
        return {"256": SHA256, "384": SHA384, "512": SHA512}[self.value[2:]]

    @property
    def padding(self) -> Padding:
        return {"E": Padding.ECDSA, "P": Padding.PSS, "R": Padding.PKCS1V15}[self.value[0]]

    @property
    def key_type(self) -> KeyType:
        return KeyType.EC if self.padding is Padding.ECDSA else KeyType.RSA


def default_algorithm(key_type: str, key_size: int) -> SignatureAlgorithm:
    """What a token signs with when the caller does not choose: the curve's own hash for EC
    (ES256 for P-256, ES384 for P-384, ES512 for P-521), RS256 for RSA."""
    if key_type == KeyType.EC.value:
        if key_size > 384:
            return SignatureAlgorithm.ES512
        return SignatureAlgorithm.ES384 if key_size > 256 else SignatureAlgorithm.ES256
    return SignatureAlgorithm.RS256


_COMBINED = {
    SignatureAlgorithm.ES256: PyKCS11.CKM_ECDSA_SHA256,
    SignatureAlgorithm.ES384: PyKCS11.CKM_ECDSA_SHA384,
    SignatureAlgorithm.ES512: PyKCS11.CKM_ECDSA_SHA512,
    SignatureAlgorithm.PS256: PyKCS11.CKM_SHA256_RSA_PKCS_PSS,
    SignatureAlgorithm.PS384: PyKCS11.CKM_SHA384_RSA_PKCS_PSS,
    SignatureAlgorithm.PS512: PyKCS11.CKM_SHA512_RSA_PKCS_PSS,
    SignatureAlgorithm.RS256: PyKCS11.CKM_SHA256_RSA_PKCS,
    SignatureAlgorithm.RS384: PyKCS11.CKM_SHA384_RSA_PKCS,
    SignatureAlgorithm.RS512: PyKCS11.CKM_SHA512_RSA_PKCS,
}
_RAW = {
    Padding.ECDSA: PyKCS11.CKM_ECDSA,
    Padding.PSS: PyKCS11.CKM_RSA_PKCS_PSS,
    Padding.PKCS1V15: PyKCS11.CKM_RSA_PKCS,
}


@dataclass(frozen=True)
class SignPlan:
    """One C_Sign call: the mechanism object and the bytes to pass as data."""

    mechanism: Any  # PyKCS11.Mechanism or PyKCS11.RSA_PSS_Mechanism
    payload: bytes
    mechanism_name: str
    hashed_on_host: bool


def plan_signature(algorithm: SignatureAlgorithm, data: bytes, token_mechanisms: frozenset[int]) -> SignPlan | None:
    """How to sign ``data`` with ``algorithm`` on a token offering ``token_mechanisms``.

    None when the token has neither the combined nor the raw mechanism.
    """
    spec = algorithm.hash
    combined = _COMBINED[algorithm]
    if combined in token_mechanisms:
        return SignPlan(_mechanism(algorithm, combined), data, _name(combined), hashed_on_host=False)
    raw = _RAW[algorithm.padding]
    if raw not in token_mechanisms:
        return None
    digest = hashlib.new(spec.name, data).digest()
    if algorithm.padding is Padding.PKCS1V15:
        payload = DigestInfo({"digest_algorithm": {"algorithm": spec.name}, "digest": digest}).dump()
    else:
        payload = digest
    return SignPlan(_mechanism(algorithm, raw), payload, _name(raw), hashed_on_host=True)


def _mechanism(algorithm: SignatureAlgorithm, ckm: int) -> Any:
    if algorithm.padding is Padding.PSS:
        spec = algorithm.hash
        return PyKCS11.RSA_PSS_Mechanism(ckm, spec.ckm, spec.mgf, spec.size)
    return PyKCS11.Mechanism(ckm, None)


def _name(ckm: int) -> str:
    return str(PyKCS11.CKM.get(ckm, hex(ckm)))
