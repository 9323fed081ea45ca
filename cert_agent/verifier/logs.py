"""The verifier's logs: one line per record, as text for a person or as JSON for a log
pipeline (``log_format = "json"``), each carrying the id of the request it belongs to.

A request id comes from the load balancer's ``X-Request-Id`` when it is a short token, else it
is made here; it is sent back in the answer's ``X-Request-Id`` so a user's report can be found.
What is logged of a request is its method, path, status and time: never a body, a cookie or
a query, so never a PIN, an SMS code or a session id.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from cert_agent.common.logtext import SafeTextFormatter
from cert_agent.common.logthread import write_in_background

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
access = logging.getLogger("cert_agent.verifier.access")
# LogRecord attributes that are not the caller's extras
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonLinesFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...extras}``, one object a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # made when the record was logged, when it is written by the log thread
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Log to stderr in ``log_format`` ("text" or "json"), every record with its request id,
    written by a thread of its own (``write_in_background``)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(SafeTextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    write_in_background(filters=[RequestIdFilter()])  # the id is read in the thread that logs
    logging.getLogger("cert_agent").setLevel(level)


@web.middleware
async def request_ids(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give the request an id, answer with it, and log one access line when it is done."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _WELL_FORMED_ID.match(offered) else secrets.token_hex(8)
    token = _request_id.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        milliseconds = round((time.perf_counter() - started) * 1000, 1)
        access.info(
            "%s %s %d %.1f ms",
            request.method,
            request.path,
            status,
            milliseconds,
            extra={"method": request.method, "path": request.path, "status": status, "ms": milliseconds},
        )
        _request_id.reset(token)
