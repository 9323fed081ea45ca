"""The agent's WebSocket server (aiohttp), bound to loopback addresses only.

Order of things for a connection:
1. before the upgrade: the peer's socket belongs to the agent's own local user (else HTTP 403
   with USER_REFUSED, see ``peers/``), Host names the agent on loopback, Origin is exactly an
   allowed origin (else HTTP 403 with ORIGIN_REFUSED); refusals are logged without secrets;
2. after it: each text frame is one request (``methods.py`` says what each method does), served
   in its own task, so that a slow token
   never holds up another request; token events are pushed as they happen;
3. a frame over ``max_message_bytes`` closes the connection with 1009 (message too big).
The origin used in signatures is the handshake's Origin header, never a value from a message.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from cert_agent import __version__
from cert_agent.agent import control, peers, protocol
from cert_agent.agent.config import AgentConfig
from cert_agent.agent.errors import ListenFailed, OriginRefused, UnknownMethod, UserRefused
from cert_agent.agent.listener import ConnectionGuard
from cert_agent.agent.methods import METHODS, Connection, PinLimits, token_json
from cert_agent.agent.origins import OriginPolicy
from cert_agent.agent.pairing import PairingKeys
from cert_agent.agent.tokens import USER_ACTION, CardEvent, TokenEvent, TokenService
from cert_agent.common.errors import BadJson, CertAgentError
from cert_agent.common.logfilters import quiet_bad_requests
from cert_agent.common.running import until_stopped

log = logging.getLogger("cert_agent.server")
SERVICE_KEY = web.AppKey("service", TokenService)
CONFIG_KEY = web.AppKey("config", AgentConfig)
POLICY_KEY = web.AppKey("policy", OriginPolicy)
GUARD_KEY = web.AppKey("guard", ConnectionGuard)
SOCKETS_KEY = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
LIMITS_KEY = web.AppKey("pin_limits", PinLimits)
PAIRING_KEY = web.AppKey("pairing", PairingKeys)
CONTROL_KEY = web.AppKey("control", control.ControlToken)


# --- JSON at the edge: the typed values become the protocol's objects here and in methods.py ---


def _event_json(event: TokenEvent | CardEvent) -> dict[str, Any]:
    if isinstance(event, CardEvent):
        if event.problem is not None:
            return {"event": event.name, "data": event.problem.to_dict()}
        card = {"reader": event.reader, "atr": event.atr.hex().upper() if event.atr else None}
        return {"event": event.name, "data": card}
    data = token_json(event.view) if event.view is not None else {"tokenId": event.token_id}
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
        # each request at DEBUG (`serve -v`): at INFO it cost every call a log line; connections,
        # refusals and failures stay at INFO
        log.debug("%s request %r from %s", request.method, request.id, conn.origin)
        result = await handler(conn, service, request.params)
        await conn.reply(request.id, result)
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
