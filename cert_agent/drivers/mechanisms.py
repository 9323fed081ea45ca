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
from typing import Any

import PyKCS11
from asn1crypto.algos import DigestInfo

from cert_agent.common.algorithms import Padding, SignatureAlgorithm


@dataclass(frozen=True)
class HashSpec:
    ckm: int  # the digest mechanism, for PSS parameters
    mgf: int  # the matching MGF1


HASHES = {
    "sha256": HashSpec(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256),
    "sha384": HashSpec(PyKCS11.CKM_SHA384, PyKCS11.CKG_MGF1_SHA384),
    "sha512": HashSpec(PyKCS11.CKM_SHA512, PyKCS11.CKG_MGF1_SHA512),
}


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
    combined = _COMBINED[algorithm]
    if combined in token_mechanisms:
        return SignPlan(_mechanism(algorithm, combined), data, _name(combined), hashed_on_host=False)
    raw = _RAW[algorithm.padding]
    if raw not in token_mechanisms:
        return None
    digest = hashlib.new(algorithm.hash_name, data).digest()
    if algorithm.padding is Padding.PKCS1V15:
        payload = DigestInfo({"digest_algorithm": {"algorithm": algorithm.hash_name}, "digest": digest}).dump()
    else:
        payload = digest
    return SignPlan(_mechanism(algorithm, raw), payload, _name(raw), hashed_on_host=True)


def _mechanism(algorithm: SignatureAlgorithm, ckm: int) -> Any:
    if algorithm.padding is Padding.PSS:
        spec = HASHES[algorithm.hash_name]
        return PyKCS11.RSA_PSS_Mechanism(ckm, spec.ckm, spec.mgf, algorithm.hash_size)
    return PyKCS11.Mechanism(ckm, None)


def _name(ckm: int) -> str:
    return str(PyKCS11.CKM.get(ckm, hex(ckm)))
