"""PKCS#11 mechanisms for each signature algorithm (``cert_agent.common.algorithms``).

For each algorithm there is a combined hash-and-sign mechanism (``CKM_SHA256_RSA_PKCS`` ...)
that the token may offer, and a raw one (``CKM_RSA_PKCS``, ``CKM_RSA_PKCS_PSS``, ``CKM_ECDSA``)
to fall back on with the hash computed on the host. SoftHSM2, for one, has no
``CKM_ECDSA_SHA256``. Both paths give the same signature format: raw ``r || s`` for ECDSA, the
plain RSA signature otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto.algos import DigestInfo
from pkcs11 import MGF, Mechanism

from cert_agent.common.algorithms import Padding, SignatureAlgorithm


@dataclass(frozen=True)
class HashSpec:
    ckm: Mechanism  # the digest mechanism, for PSS parameters
    mgf: MGF  # the matching MGF1


HASHES = {
    "sha256": HashSpec(Mechanism.SHA256, MGF.SHA256),
    "sha384": HashSpec(Mechanism.SHA384, MGF.SHA384),
    "sha512": HashSpec(Mechanism.SHA512, MGF.SHA512),
}


_COMBINED = {
    SignatureAlgorithm.ES256: Mechanism.ECDSA_SHA256,
    SignatureAlgorithm.ES384: Mechanism.ECDSA_SHA384,
    SignatureAlgorithm.ES512: Mechanism.ECDSA_SHA512,
    SignatureAlgorithm.PS256: Mechanism.SHA256_RSA_PKCS_PSS,
    SignatureAlgorithm.PS384: Mechanism.SHA384_RSA_PKCS_PSS,
    SignatureAlgorithm.PS512: Mechanism.SHA512_RSA_PKCS_PSS,
    SignatureAlgorithm.RS256: Mechanism.SHA256_RSA_PKCS,
    SignatureAlgorithm.RS384: Mechanism.SHA384_RSA_PKCS,
    SignatureAlgorithm.RS512: Mechanism.SHA512_RSA_PKCS,
}
_RAW = {
    Padding.ECDSA: Mechanism.ECDSA,
    Padding.PSS: Mechanism.RSA_PKCS_PSS,
    Padding.PKCS1V15: Mechanism.RSA_PKCS,
}


@dataclass(frozen=True)
class SignPlan:
    """One C_Sign call: the mechanism object and the bytes to pass as data."""

    mechanism: Mechanism
    pss: tuple[int, int, int] | None  # CK_RSA_PKCS_PSS_PARAMS: hash mechanism, MGF1, salt length
    payload: bytes
    mechanism_name: str
    hashed_on_host: bool


def plan_signature(algorithm: SignatureAlgorithm, data: bytes, token_mechanisms: frozenset[int]) -> SignPlan | None:
    """How to sign ``data`` with ``algorithm`` on a token offering ``token_mechanisms``.

    None when the token has neither the combined nor the raw mechanism, or the algorithm has no
    standard PKCS#11 mechanism (SM2: vendors' modules only, named by the media catalog).
    """
    combined = _COMBINED.get(algorithm)
    if combined is None:
        return None
    if combined in token_mechanisms:
        return SignPlan(combined, _parameter(algorithm), data, _name(combined), hashed_on_host=False)
    raw = _RAW[algorithm.padding]
    if raw not in token_mechanisms:
        return None
    digest = hashlib.new(algorithm.hash_name, data).digest()
    if algorithm.padding is Padding.PKCS1V15:
        payload = DigestInfo({"digest_algorithm": {"algorithm": algorithm.hash_name}, "digest": digest}).dump()
    else:
        payload = digest
    return SignPlan(raw, _parameter(algorithm), payload, _name(raw), hashed_on_host=True)


def _parameter(algorithm: SignatureAlgorithm) -> tuple[int, int, int] | None:
    if algorithm.padding is Padding.PSS:
        spec = HASHES[algorithm.hash_name]
        return (int(spec.ckm), int(spec.mgf), algorithm.hash_size)
    return None


def _name(ckm: Mechanism) -> str:
    return f"CKM_{ckm.name}"
