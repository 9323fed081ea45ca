"""The verifier's HTTP service (aiohttp): the JSON API of docs/verifier-api.md and the pages.

Every endpoint answers bad input (malformed JSON, missing fields, wrong types, oversized bodies)
with a 4xx and a stable error code, before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cert_agent.common import jsontext
from cert_agent.common.errors import BadJson, BadRequest, CertAgentError
from cert_agent.verifier import jsonout
from cert_agent.verifier.apps import authenticate
from cert_agent.verifier.errors import (
    BodyTooLarge,
    CrossSiteRequest,
    MethodNotAllowed,
    NotFound,
    NotLoggedIn,
    RequestTimeout,
    UnsupportedMediaType,
)
from cert_agent.verifier.listener import GUARD_KEY, HttpGuard, guarded
from cert_agent.verifier.login import LoginService
from cert_agent.verifier.logs import request_ids
from cert_agent.verifier.store import LoginKind, Session

log = logging.getLogger("cert_agent.verifier")
MAX_BODY_BYTES = 32 * 1024
BODY_TIMEOUT = 10.0  # seconds for a request body, once a handler reads it
SESSION_COOKIE = "etax_session"
PURGE_INTERVAL = 300.0  # seconds between purges of expired rows
PAGES = Path(__file__).resolve().parent / "pages"
WEB = Path(__file__).resolve().parent.parent / "web"
LOGIN_KEY = web.AppKey("login", LoginService)
SECURE_KEY = web.AppKey("secure_cookies", bool)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
APP_API = "/api/app/"  # called by registered tax apps (Authorization: Bearer), never by pages
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_ENTRY_ID = re.compile(r"^[0-9]{1,18}$")
# Pages load only their own scripts and styles, talk only to this site and the local agent, and
# are never framed (the PIN is typed on them).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws://127.0.0.1:* ws://[::1]:*",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """aiohttp's ``json_response`` (``application/json; charset=utf-8``), encoded by ``jsonout``."""
    return web.json_response(data, status=status, dumps=jsonout.dumps)


def error_response(error: CertAgentError) -> web.Response:
    return json_response({"error": error.to_dict()}, status=error.http_status)


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except CertAgentError as exc:
        if exc.http_status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.describe())
        else:
            log.info("%s %s refused: %s", request.method, request.path, exc.code)
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(BodyTooLarge())
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:  # the API answers JSON, always
            return error_response(_http_error(exc, request))
        raise
    except Exception:  # one request fails, the service lives on
        log.exception("%s %s failed unexpectedly", request.method, request.path)
        return error_response(CertAgentError())


@web.middleware
async def same_origin_writes(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A request that changes state must come from this site's own pages: a JSON body (which a
    cross-site form cannot send) and the browser's word that it is same-origin (Sec-Fetch-Site,
    else Origin). A request with neither header is refused too: every browser sends one."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    if request.content_type != "application/json":
        raise UnsupportedMediaType(request.content_type[:64])
    if request.path.startswith(APP_API):  # the tax app: no browser, no cookie; its credential instead
        return await handler(request)
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    expected = request.app[LOGIN_KEY].validator.settings.origin
    if fetch_site is not None and fetch_site != "same-origin":
        raise CrossSiteRequest(f"Sec-Fetch-Site: {fetch_site[:32]}")
    if origin is not None and origin != expected:
        raise CrossSiteRequest(f"Origin: {origin[:128]}")
    if fetch_site is None and origin is None:
        raise CrossSiteRequest("neither Origin nor Sec-Fetch-Site")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, pages, files and errors alike: no framing, no sniffing, no referrer, no
    caching of personal data, and no server banner."""
    headers = response.headers
    headers["Server"] = "cert-verifier"
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"
    if request.app[SECURE_KEY]:
        headers["Strict-Transport-Security"] = "max-age=31536000"


def _http_error(exc: web.HTTPException, request: web.Request) -> CertAgentError:
    if exc.status == 404:
        return NotFound(request.path[:128])
    if exc.status == 405:
        return MethodNotAllowed(request.method[:16])
    return BadRequest("request", exc.reason[:64])


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BodyTooLarge(str(request.content_length))
    try:
        async with asyncio.timeout(BODY_TIMEOUT):  # a body sent a byte at a time holds nothing for long
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
    try:
        body = jsontext.loads(raw)
    except jsontext.JsonRejected as exc:
        raise BadJson(f"the body: {exc.reason}") from None
    if not isinstance(body, dict):
        raise BadJson("the body is not a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, max_length: int = 256) -> str:
    return jsontext.text_field(body, name, max_length)


# --- API -----------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """For load balancers and monitoring: 200 when logins can be served, 503 when not."""
    healthy, details = await request.app[LOGIN_KEY].health()
    return json_response(details, status=200 if healthy else 503)


async def challenge(request: web.Request) -> web.Response:
    return json_response(await request.app[LOGIN_KEY].issue_challenge())


async def login_certificate(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        kind = LoginKind(text_field(body, "kind"))
    except ValueError:
        raise BadRequest("kind", " or ".join(LoginKind)) from None
    nonce = text_field(body, "nonce", 512)
    auth_token = body.get("authToken")
    if not isinstance(auth_token, dict):
        raise BadRequest("authToken", "a JSON object is required")
    return json_response(await request.app[LOGIN_KEY].certificate(kind, auth_token, nonce))


async def login_sms(request: web.Request) -> web.Response:
    body = await json_body(request)
    index = body.get("phoneIndex", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise BadRequest("phoneIndex", "an integer is required")
    login = request.app[LOGIN_KEY]
    result = await login.send_code(text_field(body, "attemptId"), text_field(body, "personId"), index)
    return json_response(result)


async def login_verify(request: web.Request) -> web.Response:
    body = await json_body(request)
    code = text_field(body, "code", 16)
    result = await request.app[LOGIN_KEY].verify_code(text_field(body, "attemptId"), code)
    return _with_session_cookie(request, result)


async def login_scan(request: web.Request) -> web.Response:
    body = await json_body(request)
    result = await request.app[LOGIN_KEY].show_scan(text_field(body, "attemptId"), text_field(body, "personId"))
    return json_response(result)


async def login_scan_wait(request: web.Request) -> web.Response:
    """The page's long poll for the app's answer (at most one request per SCAN_WAIT_SECONDS)."""
    body = await json_body(request)
    result = await request.app[LOGIN_KEY].wait_scan(text_field(body, "attemptId"))
    return _with_session_cookie(request, result)


async def login_cancel(request: web.Request) -> web.Response:
    body = await json_body(request)
    return json_response(await request.app[LOGIN_KEY].cancel(text_field(body, "attemptId")))


async def app_scan(request: web.Request) -> web.Response:
    """The tax app's answer to a QR code it scanned (docs/verifier-api.md, "The app API")."""
    login = request.app[LOGIN_KEY]
    app = await authenticate(login.store, request.headers.get("Authorization", ""))
    body = await json_body(request)
    verified = body.get("faceVerified")
    if not isinstance(verified, bool):
        raise BadRequest("faceVerified", "true or false is required")
    result = await login.answer_scan(app, text_field(body, "request", 64), text_field(body, "idNumber", 32), verified)
    return json_response(result)


async def login_identity(request: web.Request) -> web.Response:
    body = await json_body(request)
    login = request.app[LOGIN_KEY]
    result = await login.choose_identity(
        text_field(body, "attemptId"), jsontext.text_field(body, "identityId", 64, allow_empty=True)
    )
    return _with_session_cookie(request, result)


async def switch_identity(request: web.Request) -> web.Response:
    """切换主管税务机关: the session's enterprise itself or one of its cross-region identities."""
    session = await current_session(request)
    body = await json_body(request)
    identity_id = jsontext.text_field(body, "identityId", 64, allow_empty=True)
    rotated, described = await request.app[LOGIN_KEY].switch_identity(session, identity_id)
    return _with_session_cookie(request, {"sessionId": rotated.session_id, **described})


async def switch_choices(request: web.Request) -> web.Response:
    return json_response(await request.app[LOGIN_KEY].switch_choices(await current_session(request)))


async def switch_role(request: web.Request) -> web.Response:
    """身份切换: another of the person's roles (in this enterprise, or a linked one where allowed)."""
    session = await current_session(request)
    body = await json_body(request)
    login = request.app[LOGIN_KEY]
    rotated, described = await login.switch_role(
        session, text_field(body, "taxpayerId", 32), text_field(body, "role", 16)
    )
    return _with_session_cookie(request, {"sessionId": rotated.session_id, **described})


async def login_client(request: web.Request) -> web.Response:
    body = await json_body(request)
    result = await request.app[LOGIN_KEY].choose_client(text_field(body, "attemptId"), text_field(body, "clientId"))
    return _with_session_cookie(request, result)


def _with_session_cookie(request: web.Request, result: dict[str, Any]) -> web.Response:
    session_id = result.pop("sessionId", None)
    response = json_response(result)
    if session_id:
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            samesite="Strict",
            secure=request.app[SECURE_KEY],
            path="/",
        )
    return response


async def current_session(request: web.Request) -> Session:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not _SESSION_ID.match(session_id):  # not what we issue: never send junk to the store
        raise NotLoggedIn()
    return await request.app[LOGIN_KEY].session(session_id)


async def session_info(request: web.Request) -> web.Response:
    return json_response(await request.app[LOGIN_KEY].describe(await current_session(request)))


async def logout(request: web.Request) -> web.Response:
    await request.app[LOGIN_KEY].logout(await current_session(request))
    response = json_response({"loggedOut": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def history(request: web.Request) -> web.Response:
    entries = await request.app[LOGIN_KEY].history(await current_session(request))
    return json_response(
        {
            "entries": [
                {"id": e.entry_id, "at": e.at.isoformat(), "event": e.event, "taxpayerId": e.taxpayer_id}
                for e in entries
            ]
        }
    )


async def hide_history_entry(request: web.Request) -> web.Response:
    session = await current_session(request)
    text = request.match_info["entry_id"]
    if not _ENTRY_ID.match(text):
        raise BadRequest("entry_id", "an integer is required")
    await request.app[LOGIN_KEY].hide_history_entry(session, int(text))
    return json_response({"hidden": True})


# --- pages ----------------------------------------------------------------------------------------


def page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGES / name, headers={"Cache-Control": "no-store"})

    return handler


async def purge_on_schedule(login: LoginService, interval: float) -> None:
    """Purge expired rows every ``interval`` seconds (each wait drawn from 0.5–1× of it, so
    instances sharing a database spread their purges); a failed purge waits for the next."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.5, 1.0))
        try:
            deleted = await login.purge()
        except CertAgentError as exc:
            log.warning("purge failed: %s", exc.describe())
            continue
        if any(deleted.values()):
            log.info("purged expired rows: %s", ", ".join(f"{table} {n}" for table, n in deleted.items() if n))


def _lifetime(purge_interval: float | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """The application owns its login service's store: it purges it on a schedule while it
    runs and closes it when it stops."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        login = app[LOGIN_KEY]
        purging = asyncio.create_task(purge_on_schedule(login, purge_interval)) if purge_interval else None
        yield
        if purging is not None:
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
        await login.store.close()

    return lifetime


def create_app(
    login: LoginService,
    *,
    secure_cookies: bool = False,
    purge_interval: float | None = PURGE_INTERVAL,
    guard: HttpGuard | None = None,
) -> web.Application:
    middlewares = [guarded, request_ids, errors_as_json, same_origin_writes]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    if guard is not None:
        app[GUARD_KEY] = guard
    app.on_response_prepare.append(security_headers)
    app[LOGIN_KEY] = login
    app[SECURE_KEY] = secure_cookies
    app.cleanup_ctx.append(_lifetime(purge_interval))
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/challenge", challenge)
    app.router.add_post("/api/login/certificate", login_certificate)
    app.router.add_post("/api/login/sms", login_sms)
    app.router.add_post("/api/login/verify", login_verify)
    app.router.add_post("/api/login/client", login_client)
    app.router.add_post("/api/login/scan", login_scan)
    app.router.add_post("/api/login/scan/wait", login_scan_wait)
    app.router.add_post("/api/login/cancel", login_cancel)
    app.router.add_post("/api/login/identity", login_identity)
    app.router.add_post("/api/session/identity", switch_identity)
    app.router.add_get("/api/session/switch", switch_choices)
    app.router.add_post("/api/session/switch", switch_role)
    app.router.add_post("/api/app/scan", app_scan)
    app.router.add_get("/api/session", session_info)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/history", history)
    app.router.add_post("/api/history/{entry_id}/hide", hide_history_entry)
    app.router.add_get("/", page("login.html"))
    app.router.add_get("/home", page("home.html"))
    app.router.add_get("/account/certificate", page("certificate.html"))
    app.router.add_get("/account/identities", page("identities.html"))
    app.router.add_static("/static/pages/", PAGES)
    app.router.add_static("/static/", WEB)
    return app
