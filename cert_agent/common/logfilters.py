"""Log hygiene for the two servers: malformed HTTP from a client is the client's fault, not ours.

aiohttp logs every request it cannot parse at ERROR with a traceback. A public verifier (or any
local process, for the agent) could fill the log that way. ``quiet_bad_requests`` turns those
records into one INFO line without a traceback, at most once per ``interval`` seconds, counting
the ones it held back. Real server errors are untouched.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError


class BadRequestFilter(logging.Filter):
    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._last = -interval
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or error.code >= 500:
            return True
        now = time.monotonic()
        if now - self._last < self._interval:
            self._held += 1
            return False
        record.msg = "malformed HTTP request from %s refused with %s (%d more since the last report)"
        record.args = (*(record.args or ()), error.code, self._held)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        self._last, self._held = now, 0
        return True


def quiet_bad_requests() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in logger.filters):
        logger.addFilter(BadRequestFilter())
