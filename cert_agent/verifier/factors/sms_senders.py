"""Sending the login SMS code: the development outbox and an HTTP gateway, behind one interface.

The sender is awaited, so a slow gateway never blocks the service. A sender never logs the
text or the code (the code is the second factor).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp

from cert_agent.verifier.errors import SmsUnavailable

log = logging.getLogger("cert_agent.verifier.sms")


class SmsSender(Protocol):
    async def send(self, phone: str, text: str, code: str) -> None: ...


class OutboxSender:
    """The development sender: appends each message as a JSON line to a local outbox file,
    which the tests and the demo read."""

    def __init__(self, path: Path, on_send: Callable[[dict[str, str]], None] | None = None) -> None:
        self.path = path
        self._on_send = on_send

    async def send(self, phone: str, text: str, code: str) -> None:
        record = {"at": dt.datetime.now(dt.UTC).isoformat(), "phone": phone, "text": text, "code": code}
        with self.path.open("a", encoding="utf-8") as outbox:  # one short local append
            outbox.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self._on_send:
            self._on_send(record)


class HttpGatewaySender:
    """A production sender: POST ``{"phone", "text"}`` as JSON to the operator's SMS gateway,
    with a bearer credential read from the environment variable ``token_env`` (never from a file in
    the repository). Connection errors, time-outs and 5xx answers are retried ``retries`` times
    with a growing pause; then the send fails with SMS_UNAVAILABLE (503)."""

    def __init__(self, url: str, *, token_env: str | None = None, timeout: float = 5.0, retries: int = 2) -> None:
        self.url = url
        self._bearer = os.environ.get(token_env, "") if token_env else ""
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries

    async def send(self, phone: str, text: str, code: str) -> None:
        headers = {"Authorization": f"Bearer {self._bearer}"} if self._bearer else {}
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                async with (
                    aiohttp.ClientSession(timeout=self._timeout) as session,
                    session.post(self.url, json={"phone": phone, "text": text}, headers=headers) as response,
                ):
                    if response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500:
                        break  # the gateway refused the message: trying again will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            log.warning("SMS gateway attempt %d failed: %s", attempt + 1, problem)
        raise SmsUnavailable(problem)
