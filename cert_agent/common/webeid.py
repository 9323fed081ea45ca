"""The Web eID authentication token the agent returns (format ``web-eid:1.0``).

The signature covers ``H(origin) || H(nonce)``: H is the algorithm's hash (SHA-256 for ES256,
PS256, RS256; SHA-384 and SHA-512 likewise), the origin is the page's origin as the browser
sent it in the WebSocket handshake, and the nonce is the verifier's challenge. A signature made
for one origin is therefore useless to any other site.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cert_agent import __version__
from cert_agent.common.algorithms import SignatureAlgorithm, default_algorithm
from cert_agent.common.errors import BadRequest

TOKEN_FORMAT = "web-eid:1.0"
APP_VERSION = f"https://cert-agent.invalid/releases/{__version__}"


def signed_data(origin: str, nonce: str, algorithm: SignatureAlgorithm) -> bytes:
    name = algorithm.hash_name
    return hashlib.new(name, origin.encode("utf-8")).digest() + hashlib.new(name, nonce.encode("utf-8")).digest()


def choose_algorithm(requested: SignatureAlgorithm | None, key_type: str, key_size: int) -> SignatureAlgorithm:
    """The requested algorithm if the key can make it, else the key's default."""
    if requested is None:
        return default_algorithm(key_type, key_size)
    if requested.key_type.value != key_type:
        raise BadRequest("algorithm", f"{requested.value} cannot be made with an {key_type} key")
    return requested


def auth_token(certificate_b64: str, algorithm: SignatureAlgorithm, signature: bytes) -> dict[str, Any]:
    return {
        "unverifiedCertificate": certificate_b64,
        "algorithm": algorithm.value,
        "signature": base64.b64encode(signature).decode("ascii"),
        "format": TOKEN_FORMAT,
        "appVersion": APP_VERSION,
    }
