"""The agent's WebSocket server (aiohttp), bound to loopback addresses only.

Order of things for a connection:
1. before the upgrade: the peer's socket belongs to the agent's own local user (else HTTP 403
   with USER_REFUSED, see ``peers/``), Host names the agent on loopback, Origin is exactly an
   allowed origin (else HTTP 403 with ORIGIN_REFUSED); refusals are logged without secrets;
2. after it: each text frame is one request, served in its own task, so that a slow token
   never holds up another request; token events are pushed as they happen;
3. a frame over ``max_message_bytes`` closes the connection with 1009 (message too big).
The origin used in signatures is the handshake's Origin header, never a value from a message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from cert_agent import __version__
from cert_agent.agent import control, pairing, peers, protocol
from cert_agent.agent.config import AgentConfig
from cert_agent.agent.errors import ListenFailed, OriginRefused, UnknownMethod, UnsupportedProtocol, UserRefused
from cert_agent.agent.listener import ConnectionGuard
from cert_agent.agent.origins import OriginPolicy
from cert_agent.agent.pairing import PairingKeys
from cert_agent.agent.ratelimit import FailureWindow, WindowsByKey, pin_attempt
from cert_agent.agent.tokens import USER_ACTION, CardEvent, TokenEvent, TokenService
from cert_agent.agent.workers.protocol import TokenView
from cert_agent.common.errors import BadJson, CertAgentError
from cert_agent.common.logfilters import quiet_bad_requests
from cert_agent.common.running import until_stopped
from cert_agent.common.webeid import auth_token, choose_algorithm, signed_data
from cert_agent.drivers.errors import CertificateNotFound, CertificateUnparsable
from cert_agent.drivers.models import CertificateInfo, TokenCertificate
from cert_agent.drivers.pin import INITIAL_PIN

log = logging.getLogger("cert_agent.server")
SERVICE_KEY = web.AppKey("service", TokenService)
CONFIG_KEY = web.AppKey("config", AgentConfig)
POLICY_KEY = web.AppKey("policy", OriginPolicy)
GUARD_KEY = web.AppKey("guard", ConnectionGuard)
SOCKETS_KEY = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])


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
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(json.dumps(message, ensure_ascii=False))

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


LIMITS_KEY = web.AppKey("pin_limits", PinLimits)
PAIRING_KEY = web.AppKey("pairing", PairingKeys)
CONTROL_KEY = web.AppKey("control", control.ControlToken)


Handler = Callable[[Connection, TokenService, dict[str, Any]], Awaitable[dict[str, Any]]]


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


async def list_certificates(conn: Connection, service: TokenService, params: dict[str, Any]) -> dict[str, Any]:
    await service.scan_now()
    return {"tokens": [_token_json(view) for view in service.tokens()], "problems": _problems_json(service)}


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
        # Whether the PIN is the media's well-known initial one: the page asks the user to
        # change it, without knowing (or keeping) the value itself. (Unknown on a PIN pad.)
        initial = pin is not None and pin.equals(INITIAL_PIN)
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


def _certificate(service: TokenService, token_id: str, cert_id: bytes) -> tuple[TokenCertificate, CertificateInfo]:
    cert = service.token(token_id).certificate(cert_id)
    if cert is None:
        raise CertificateNotFound(cert_id.hex())
    if cert.info is None:
        raise CertificateUnparsable(cert_id.hex())
    return cert, cert.info


# --- JSON at the edge: the typed values become the protocol's objects here, and only here -----


def _token_json(view: TokenView) -> dict[str, Any]:
    return {**view.token.to_dict(), "certificates": [c.to_dict() for c in view.certificates]}


def _problems_json(service: TokenService) -> list[dict[str, Any]]:
    return [problem.to_dict() for problem in service.problems()]


def _event_json(event: TokenEvent | CardEvent) -> dict[str, Any]:
    if isinstance(event, CardEvent):
        if event.problem is not None:
            return {"event": event.name, "data": event.problem.to_dict()}
        card = {"reader": event.reader, "atr": event.atr.hex().upper() if event.atr else None}
        return {"event": event.name, "data": card}
    data = _token_json(event.view) if event.view is not None else {"tokenId": event.token_id}
    return {"event": event.name, "data": data}


# --- the WebSocket endpoint ------------------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    service = request.app[SERVICE_KEY]
    policy = request.app[POLICY_KEY]
    origin = request.headers.get("Origin")
    host = request.headers.get("Host")
    stranger = await _stranger(request)
    if stranger is not None:
        log.warning("refused handshake: the peer is %s, not this agent's user (peer=%s)", stranger, request.remote)
        return web.json_response({"error": UserRefused().to_dict()}, status=403)
    presented = request.headers.get(control.HEADER)
    if presented is not None:  # the user's own cert-agent command, not a page (control.py)
        origin = USER_ACTION if request.app[CONTROL_KEY].matches(presented) else None
    refusal = policy.host_refusal(host) or (None if origin == USER_ACTION else policy.origin_refusal(origin))
    if refusal or origin is None:
        log.warning("refused handshake: %s (origin=%r host=%r peer=%s)", refusal, origin, host, request.remote)
        return web.json_response({"error": OriginRefused(refusal or "").to_dict()}, status=403)

    ws = web.WebSocketResponse(max_msg_size=config.max_message_bytes, heartbeat=30.0)
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    guard = request.app[GUARD_KEY]
    guard.upgraded(request.transport, origin, ws)
    conn = Connection(ws, origin, config, request.app[LIMITS_KEY], request.app[PAIRING_KEY])
    log.info("connection opened for %s", origin)
    events = service.subscribe()
    forwarder = asyncio.create_task(_forward_events(conn, events))
    tasks: set[asyncio.Task[None]] = set()
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                task = asyncio.create_task(_serve(conn, service, message.data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif message.type == WSMsgType.BINARY:
                await conn.send({"id": None, "error": BadJson("binary frame").to_dict()})
            elif message.type == WSMsgType.ERROR:
                log.info("connection for %s ended: %s", origin, ws.exception())
                break
    finally:
        service.unsubscribe(events)
        guard.closed(origin, ws)
        forwarder.cancel()
        for task in tasks:
            task.cancel()
        log.info("connection closed for %s (code %s)", origin, ws.close_code)
    return ws


async def _stranger(request: web.Request) -> str | None:
    """Who the peer is when it is not the agent's own user ("unknown" when the OS would not
    say), or None for the agent's own user. The lookup runs off the event loop."""
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not local or not peer:
        return "unknown"
    owner = await asyncio.to_thread(peers.peer_user, (local[0], local[1]), (peer[0], peer[1]))
    if owner is None:
        return "unknown"
    return None if owner == peers.current_user() else str(owner)


async def _serve(conn: Connection, service: TokenService, text: str) -> None:
    request_id: protocol.RequestId | None = None
    try:
        request = protocol.parse_request(text)
        request_id = request.id
        handler = METHODS.get(request.method)
        if handler is None:
            raise UnknownMethod(request.method[:64])
        log.info("%s request %r from %s", request.method, request.id, conn.origin)
        result = await handler(conn, service, request.params)
        await conn.send({"id": request.id, "result": result})
    except protocol.RequestError as exc:
        await conn.send({"id": exc.request_id, "error": exc.error.to_dict()})
    except CertAgentError as exc:
        log.info("request %r from %s failed: %s", request_id, conn.origin, exc.code)
        await conn.send({"id": request_id, "error": exc.to_dict()})
    except Exception:  # a bug must cost one request, never the connection or the daemon
        log.exception("request %r from %s failed unexpectedly", request_id, conn.origin)
        await conn.send({"id": request_id, "error": CertAgentError().to_dict()})


async def _forward_events(conn: Connection, events: asyncio.Queue[TokenEvent | CardEvent]) -> None:
    while True:
        await conn.send(_event_json(await events.get()))


# --- the application -------------------------------------------------------------------------


def create_app(
    config: AgentConfig, service: TokenService, guard: ConnectionGuard, pairing_keys: PairingKeys
) -> web.Application:
    app = web.Application(client_max_size=config.max_message_bytes)
    app[CONFIG_KEY] = config
    app[SERVICE_KEY] = service
    app[POLICY_KEY] = config.origin_policy()
    app[LIMITS_KEY] = PinLimits.from_config(config)
    app[PAIRING_KEY] = pairing_keys
    app[GUARD_KEY] = guard
    app[SOCKETS_KEY] = weakref.WeakSet()
    app.router.add_get("/ws", websocket)
    app.cleanup_ctx.append(_token_service)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(lambda _: guard.close())
    return app


async def _close_sockets(app: web.Application) -> None:
    """On stop, tell every page at once (1001 going away) instead of waiting for them to leave."""
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS_KEY]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"agent stopping")


async def _token_service(app: web.Application) -> AsyncIterator[None]:
    """The token service lives as long as the application (aiohttp's cleanup context)."""
    service = app[SERVICE_KEY]
    await service.start()
    yield
    await service.stop()


async def start(config: AgentConfig) -> web.AppRunner:
    """Start the application (and with it the token service) on the first of the configured
    ports where every loopback address of ``listen_hosts`` can be bound. Raises ListenFailed,
    naming who holds the ports, when none can be. The caller ends it with ``runner.cleanup()``;
    the port in use is ``runner.app[CONFIG_KEY].port``."""
    if not config.allowed_origins:
        log.warning("no allowed origins are configured: every page will be refused")
    quiet_bad_requests()
    guard = ConnectionGuard(
        handshake_timeout=config.handshake_timeout,
        max_pending=config.max_pending_connections,
        max_per_origin=config.max_connections_per_origin,
    )
    pairing_keys = PairingKeys(config.pairing_path())
    await asyncio.to_thread(pairing_keys.load)  # a folder that is not the user's own: refused now
    port, failures = _bind(guard, config)
    if port is None:
        holders = [holder for p in config.ports() for holder in await asyncio.to_thread(peers.port_holders, p)]
        for failure in failures:
            log.error("cannot listen on %s", failure)
        raise ListenFailed(
            "; ".join(failures),
            ports=list(config.ports()),
            holders=[holder.to_dict() for holder in holders],
        )
    config = replace(config, port=port)
    app = create_app(config, TokenService(config), guard, pairing_keys)
    try:
        app[CONTROL_KEY] = await asyncio.to_thread(control.ControlToken, port)
    except CertAgentError:
        await guard.close()
        raise
    app.on_cleanup.append(lambda app: asyncio.to_thread(app[CONTROL_KEY].remove))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = runner.server
    if server is None:
        raise RuntimeError("the aiohttp runner has no server after setup")
    guard.serve(server)
    log.info("cert-agent %s listening on port %s for %s", __version__, port, sorted(config.allowed_origins))
    return runner


def _bind(guard: ConnectionGuard, config: AgentConfig) -> tuple[int | None, list[str]]:
    """The first port whose every listen host could be bound (None if none), and why the ports
    before it could not be."""
    failures = []
    for port in config.ports():
        try:
            guard.listen(config.listen_hosts, port)
        except OSError as exc:
            failures.append(str(exc.strerror))
            continue
        if failures:
            log.warning("ports before %s are taken (%s): serving on %s", port, "; ".join(failures), port)
        return port, failures
    return None, failures


async def serve_forever(config: AgentConfig, on_listening: Callable[[int], None] = lambda port: None) -> None:
    runner = await start(config)
    port = runner.app[CONFIG_KEY].port
    on_listening(port)
    try:
        await until_stopped(lambda: print(f"cert-agent listening on ws://127.0.0.1:{port}/ws", flush=True))
    finally:
        await runner.cleanup()
