"""The WebSocket protocol, version 1: request parsing and field checks (see docs/protocol.md).

A request is a JSON object ``{"id": ..., "method": ..., "params": {...}}``; the agent answers
``{"id": ..., "result": {...}}`` or ``{"id": ..., "error": {"code": ..., ...}}`` and pushes
``{"event": ..., "data": {...}}`` without an id.
"""

from __future__ import annotations

import base64
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from cert_agent.common import jsontext
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import BadJson, BadRequest
from cert_agent.drivers.pin import Pin

PROTOCOL_VERSION = 1
MAX_ID_LENGTH = 64
MAX_PIN_LENGTH = 64
NONCE_MIN_LENGTH = 44  # base64 of 32 random bytes, what Web eID challenges carry at least
NONCE_MAX_LENGTH = 512
_NONCE_CHARS = re.compile(r"^[\x21-\x7e]+$")
_HEX = re.compile(r"^[0-9a-f]{1,256}$")

RequestId = str | int


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any]


class RequestError(Exception):
    """A request that cannot be served, with the id to answer (None when it had none)."""

    def __init__(self, request_id: RequestId | None, error: BadJson | BadRequest) -> None:
        super().__init__(error.describe())
        self.request_id = request_id
        self.error = error


def parse_request(text: str) -> Request:
    try:
        message = jsontext.loads(text)
    except jsontext.JsonRejected as exc:
        raise RequestError(None, BadJson(exc.reason)) from None
    if not isinstance(message, dict):
        raise RequestError(None, BadJson("not a JSON object"))
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        raise RequestError(None, BadRequest("id", "a string or an integer is required"))
    if isinstance(request_id, str) and len(request_id) > MAX_ID_LENGTH:
        raise RequestError(None, BadRequest("id", f"at most {MAX_ID_LENGTH} characters"))
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RequestError(request_id, BadRequest("method", "a string is required"))
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise RequestError(request_id, BadRequest("params", "an object is required"))
    return Request(request_id, method, params)


def string_param(params: dict[str, Any], name: str, *, max_length: int = 512) -> str:
    return jsontext.text_field(params, name, max_length)


def pin_param(params: dict[str, Any], name: str) -> Pin:
    """The PIN as a wipeable Pin, from here to C_Login (the caller wipes it: ``with``); the
    error says which field, never what it held."""
    return Pin(jsontext.text_field(params, name, MAX_PIN_LENGTH))


def pin_or_pad(params: dict[str, Any], name: str, pin_pad: bool) -> AbstractContextManager[Pin | None]:
    """``pin_param``; but for a token with a PIN pad a PIN may be left out (absent or null):
    then None, and the reader asks for it."""
    if pin_pad and params.get(name) is None:
        return nullcontext(None)
    return pin_param(params, name)


def cert_id_param(params: dict[str, Any]) -> bytes:
    value = string_param(params, "certId")
    if not _HEX.match(value):
        raise BadRequest("certId", "lower-case hexadecimal is required")
    return bytes.fromhex(value) if len(value) % 2 == 0 else bytes.fromhex("0" + value)


def nonce_param(params: dict[str, Any]) -> str:
    value = params.get("challengeNonce")
    if not isinstance(value, str):
        raise BadRequest("challengeNonce", "a string is required")
    if not NONCE_MIN_LENGTH <= len(value) <= NONCE_MAX_LENGTH or not _NONCE_CHARS.match(value):
        raise BadRequest(
            "challengeNonce", f"{NONCE_MIN_LENGTH} to {NONCE_MAX_LENGTH} printable ASCII characters are required"
        )
    return value


def pairing_challenge_param(params: dict[str, Any]) -> bytes | None:
    """``hello``'s ``pairingChallenge``: base64 of 16 to 64 random bytes, or absent."""
    value = params.get("pairingChallenge")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest("pairingChallenge", "base64 of 16 to 64 bytes is required")
    try:
        challenge = base64.b64decode(value, validate=True)
    except ValueError:
        raise BadRequest("pairingChallenge", "base64 of 16 to 64 bytes is required") from None
    if not 16 <= len(challenge) <= 64:
        raise BadRequest("pairingChallenge", "base64 of 16 to 64 bytes is required")
    return challenge


def algorithm_param(params: dict[str, Any]) -> SignatureAlgorithm | None:
    value = params.get("algorithm")
    if value is None:
        return None
    try:
        return SignatureAlgorithm(value)
    except ValueError:
        allowed = ", ".join(a.value for a in SignatureAlgorithm)
        raise BadRequest("algorithm", f"one of {allowed}") from None


def protocol_versions_param(params: dict[str, Any]) -> list[int]:
    value = params.get("protocolVersions", [PROTOCOL_VERSION])
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise BadRequest("protocolVersions", "a list of integers is required")
    return value
