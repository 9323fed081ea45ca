"""What each method of the agent's protocol does (``docs/protocol.md``), for one page's
connection (:class:`Connection`): its origin, its wrong-PIN windows, its pairing keys.

``METHODS`` maps each method name to its handler; ``server.py`` reads frames, finds the handler,
and turns what it returns (or raises) into the reply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cert_agent import __version__
from cert_agent.agent import pairing, protocol
from cert_agent.agent.config import AgentConfig
from cert_agent.agent.errors import OriginRefused, UnsupportedProtocol
from cert_agent.agent.pairing import PairingKeys
from cert_agent.agent.ratelimit import FailureWindow, WindowsByKey, pin_attempt
from cert_agent.agent.tokens import USER_ACTION, TokenService
from cert_agent.agent.workers.protocol import TokenView
from cert_agent.common.webeid import auth_token, choose_algorithm, signed_data
from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.errors import CertificateNotFound, CertificateUnparsable, KeyUnusable
from cert_agent.drivers.models import CertificateInfo, LibraryProblem, MediumProblem, Token, TokenCertificate
from cert_agent.drivers.pin import INITIAL_PIN

log = logging.getLogger("cert_agent.server")


class Connection:
    """One page's WebSocket: its origin, its wrong-PIN windows, and a lock for sending."""

    def __init__(
        self, ws: web.WebSocketResponse, origin: str, config: AgentConfig, limits: PinLimits, pairing: PairingKeys
    ):
        self.ws = ws
        self.origin = origin
        self.pairing = pairing
        self.pin_failures = FailureWindow(config.pin_failures_per_connection, config.pin_failure_window)
        self._limits = limits
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        await self._send_text(json.dumps(message, ensure_ascii=False))

    async def reply(self, request_id: protocol.RequestId, result: dict[str, Any] | JsonText) -> None:
        """The answer to request ``request_id``: ``{"id": …, "result": …}``."""
        text = result.text if isinstance(result, JsonText) else json.dumps(result, ensure_ascii=False)
        await self._send_text('{"id": ' + json.dumps(request_id) + ', "result": ' + text + "}")

    async def _send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(text)

    def pin_attempt(self, token_id: str) -> contextlib.AbstractContextManager[None]:
        """Admit one PIN-bearing request for ``token_id`` through the connection's, the
        origin's and the token-and-origin windows (RateLimited when any is full). Called inside
        the token's PIN turn, so the counts are exact when they are checked. Another origin's
        wrong PINs on the same token never fill this origin's windows."""
        by_token = self._limits.by_token[f"{token_id}\n{self.origin}"]
        return pin_attempt([self.pin_failures, self._limits.by_origin[self.origin], by_token])


@dataclass(frozen=True)
class PinLimits:
    """The wrong-PIN windows shared by every connection: per origin, and per token and origin."""

    by_origin: WindowsByKey
    by_token: WindowsByKey

    @classmethod
    def from_config(cls, config: AgentConfig) -> PinLimits:
        return cls(
            WindowsByKey(config.pin_failures_per_origin, config.pin_failure_window),
            WindowsByKey(config.pin_failures_per_token, config.pin_failure_window),
        )


@dataclass(frozen=True)
class JsonText:
    """A result already encoded as JSON, sent as it is."""

    text: str


Handler = Callable[[Connection, TokenService, dict[str, Any]], Awaitable[dict[str, Any] | JsonText]]


async def hello(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    if protocol.PROTOCOL_VERSION not in protocol.protocol_versions_param(params):
        raise UnsupportedProtocol(f"agent speaks {protocol.PROTOCOL_VERSION}")
    challenge = protocol.pairing_challenge_param(params)
    result: dict[str, Any] = {
        "agent": "cert-agent",
        "version": __version__,
        "protocolVersion": protocol.PROTOCOL_VERSION,
        "origin": conn.origin,
    }
    if challenge is not None:
        key = await asyncio.to_thread(conn.pairing.key, conn.origin)
        result["paired"] = key is not None
        if key is not None:
            result["pairingProof"] = base64.b64encode(pairing.proof(key, conn.origin, challenge)).decode("ascii")
    return result


async def pair(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    """This origin's pairing key (made on first use), for the page to keep."""
    key = await asyncio.to_thread(conn.pairing.key_or_new, conn.origin)
    return {"pairingKey": base64.b64encode(key).decode("ascii")}


async def list_certificates(conn: Connection, service: TokenService, params: dict[str, Any]) -> JsonText:
    await service.up_to_date()
    return _LISTING.answer(tuple(service.tokens()), service.problems())


class _Listing:
    """``listCertificates``' answer as JSON text, encoded again only when a token or a problem
    changed: encoding every certificate was most of the call's own cost (issue 23). A view is
    compared by identity (``TokenService`` hands out the same view object until a scan or a PIN
    count changes it) and held while cached, so its id cannot be reused for another."""

    def __init__(self) -> None:
        self._views: tuple[TokenView, ...] = ()
        self._problems: tuple[LibraryProblem | MediumProblem, ...] | None = None
        self._answer = JsonText("")

    def answer(self, views: tuple[TokenView, ...], problems: tuple[LibraryProblem | MediumProblem, ...]) -> JsonText:
        same = len(views) == len(self._views) and all(a is b for a, b in zip(views, self._views, strict=True))
        if not same or problems != self._problems:
            listing = {"tokens": [token_json(view) for view in views], "problems": [p.to_dict() for p in problems]}
            self._answer = JsonText(json.dumps(listing, ensure_ascii=False))
            self._views, self._problems = views, problems
        return self._answer


_LISTING = _Listing()


async def authenticate(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    token_id = protocol.string_param(params, "tokenId")
    cert_id = protocol.cert_id_param(params)
    nonce = protocol.nonce_param(params)
    requested = protocol.algorithm_param(params)
    if conn.origin == USER_ACTION:
        raise OriginRefused("the user's own connection signs no login: there is no site to bind it to")
    with protocol.pin_or_pad(params, "pin", service.has_pin_pad(token_id)) as pin:
        cert, info = _certificate(service, token_id, cert_id)
        algorithm = choose_algorithm(requested, info.key_type, info.key_size)
        data = signed_data(conn.origin, nonce, algorithm)
        # Whether the PIN is the medium's initial one: the page asks the user to change it, without
        # knowing (or keeping) the value. The medium's own word where it gives one (SKF's default
        # flag), else a comparison with the catalog's initial PIN for it, or the well-known
        # 88888888. (Unknown on a PIN pad.)
        token = service.token(token_id).token
        reported = token.pin.is_default
        initial = pin is not None and (reported if reported is not None else pin.equals(initial_pin_of(token)))
        async with service.pin_turn(token_id):
            with conn.pin_attempt(token_id):
                signature = await service.sign(token_id, cert_id, pin, data, algorithm, conn.origin)
    certificate = base64.b64encode(cert.der).decode("ascii")
    return {"authToken": auth_token(certificate, algorithm, signature), "initialPin": initial}


async def verify_pin(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    token_id = protocol.string_param(params, "tokenId")
    pin_pad = service.token(token_id).token.pin_pad  # an unknown token is TOKEN_NOT_FOUND, not an attempt
    with protocol.pin_or_pad(params, "pin", pin_pad) as pin:
        async with service.pin_turn(token_id):
            with conn.pin_attempt(token_id):
                await service.verify_pin(token_id, pin, conn.origin)
    return {"verified": True}


async def change_pin(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    token_id = protocol.string_param(params, "tokenId")
    pin_pad = service.token(token_id).token.pin_pad
    with protocol.pin_or_pad(params, "oldPin", pin_pad) as old, protocol.pin_or_pad(params, "newPin", pin_pad) as new:
        async with service.pin_turn(token_id):
            with conn.pin_attempt(token_id):
                await service.change_pin(token_id, old, new, conn.origin)
    return {"changed": True}


METHODS: dict[str, Handler] = {
    "hello": hello,
    "pair": pair,
    "listCertificates": list_certificates,
    "authenticate": authenticate,
    "verifyPin": verify_pin,
    "changePin": change_pin,
}


def initial_pin_of(token: Token) -> str:
    """The PIN the medium comes with: the media catalog's word for it, else 88888888."""
    entry = default_catalog().for_token(token.module, token.manufacturer, token.model)
    return entry.initial_pin if entry is not None and entry.initial_pin else INITIAL_PIN


def _certificate(service: TokenService, token_id: str, cert_id: bytes) -> tuple[TokenCertificate, CertificateInfo]:
    cert = service.token(token_id).certificate(cert_id)
    if cert is None:
        raise CertificateNotFound(cert_id.hex())
    if cert.info is None:
        raise CertificateUnparsable(cert_id.hex())
    if isinstance(cert.error, KeyUnusable):  # listed so: refused so, before any PIN is asked for
        raise cert.error
    return cert, cert.info


# --- JSON at the edge: the typed values become the protocol's objects here (and in server.py) ---


def token_json(view: TokenView) -> dict[str, Any]:
    return {**view.token.to_dict(), "certificates": [c.to_dict() for c in view.certificates]}
