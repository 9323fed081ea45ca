"""What runs inside a token worker process: a Pkcs11Driver and plain functions around it.

The daemon keeps PKCS#11 out of its own process because PyKCS11 holds the GIL during C calls:
one slow token would stall the event loop. There is one discovery worker (scans tokens and
their certificates) and one worker per token (PIN checks and signatures), so a slow or
vanished token stalls only its own worker. Functions here take and return plain, picklable
values; PINs arrive as bytes, are wrapped in a Pin at once and wiped when the call ends.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.errors import TokenNotPresent
from cert_agent.drivers.models import Token
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver

log = logging.getLogger("cert_agent.worker")
_driver: Pkcs11Driver | None = None
_known: dict[str, Token] = {}
_certificates: dict[str, list[dict[str, Any]]] = {}


def init(modules: list[str]) -> None:
    """Load the modules. The worker keeps no count of wrong PINs (the daemon does, per token,
    so the count survives a worker restart): tries left here come from token flags only."""
    global _driver
    _driver = Pkcs11Driver(modules)


def _get_driver() -> Pkcs11Driver:
    if _driver is None:
        raise RuntimeError("worker not initialised")
    return _driver


def _token(token_id: str) -> Token:
    token = _known.get(token_id)
    if token is None:
        token = _get_driver().find_token(token_id=token_id)
        _known[token_id] = token
    return token


def scan() -> dict[str, Any]:
    """Every token with its certificates. Certificates are read once per inserted token."""
    driver = _get_driver()
    driver.rescan()
    tokens = driver.tokens()
    present = {t.token_id for t in tokens}
    for gone in set(_certificates) - present:
        del _certificates[gone]
    result = []
    for token in tokens:
        _known[token.token_id] = token
        if token.token_id not in _certificates:
            try:
                _certificates[token.token_id] = [c.to_dict() for c in driver.certificates(token)]
            except TokenNotPresent:
                continue  # pulled out between the two calls
        item = token.to_dict()
        item["certificates"] = _certificates[token.token_id]
        result.append(item)
    return {"tokens": result, "problems": [p.to_dict() for p in driver.problems]}


def verify_pin(token_id: str, pin: bytes) -> None:
    with Pin(pin) as secret:
        _get_driver().verify_pin(_token(token_id), secret)


def change_pin(token_id: str, old: bytes, new: bytes) -> None:
    with Pin(old) as old_pin, Pin(new) as new_pin:
        _get_driver().change_pin(_token(token_id), old_pin, new_pin)


def sign(token_id: str, cert_id: bytes, pin: bytes, data: bytes, algorithm: str) -> bytes:
    with Pin(pin) as secret:
        return _get_driver().sign(_token(token_id), cert_id, secret, data, SignatureAlgorithm(algorithm))


OPERATIONS: dict[str, Callable[..., Any]] = {
    "scan": scan,
    "verify_pin": verify_pin,
    "change_pin": change_pin,
    "sign": sign,
}


def serve(conn: Connection, modules: list[str]) -> None:
    """The worker's loop: one (operation, args) request in, one (ok, value) answer out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's; it stops the workers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    init(modules)
    while True:
        try:
            operation, args = conn.recv()
        except (EOFError, OSError):
            return  # the daemon went away
        try:
            reply: tuple[bool, Any] = (True, OPERATIONS[operation](*args))
        except CertAgentError as exc:
            reply = (False, exc)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("%s failed", operation)
            reply = (False, CertAgentError(type(exc).__name__))
        conn.send(reply)
