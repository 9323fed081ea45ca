"""What runs inside a token worker process: a Pkcs11Driver serving typed requests.

The daemon keeps PKCS#11 out of its own process because PyKCS11 holds the GIL during C calls:
one slow token would stall the event loop. There is one discovery worker (scans tokens and
their certificates) and one worker per token (PIN checks and signatures), so a slow or
vanished token stalls only its own worker. Requests and replies are the types of
``worker_protocol``; every PIN a request carries is wiped when the request has been served.
"""

from __future__ import annotations

import logging
import signal
from multiprocessing.connection import Connection

from cert_agent.agent import worker_protocol as wire
from cert_agent.agent.worker_protocol import ChangePin, Reply, Scan, ScanResult, Sign, TokenView, VerifyPin
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.errors import TokenNotPresent
from cert_agent.drivers.models import Token, TokenCertificate
from cert_agent.drivers.pin import wiped
from cert_agent.drivers.pkcs11 import Pkcs11Driver

log = logging.getLogger("cert_agent.worker")


class Worker:
    """One process's driver, the tokens it has seen, and their certificates (read once per
    inserted token)."""

    def __init__(self, modules: list[str]) -> None:
        # No count of wrong PINs here: the daemon keeps it per token, so it survives a restart
        # of this process. Tries left reported from here come from the token's flags only.
        self.driver = Pkcs11Driver(modules)
        self._known: dict[str, Token] = {}
        self._certificates: dict[str, tuple[TokenCertificate, ...]] = {}
        self._warm_up()

    def _warm_up(self) -> None:
        """Look at the tokens and their mechanisms once, before any request: the first PIN a
        user types then costs what every later one does."""
        try:
            for token in self.driver.tokens():
                self._known[token.token_id] = token
                self.driver.mechanisms(token)
        except CertAgentError as exc:  # a token going away now is noticed by the request
            log.info("warm-up: %s", exc.describe())

    def handle(self, request: wire.WorkerRequest) -> ScanResult | bytes | None:
        match request:
            case Scan():
                return self.scan()
            case VerifyPin(token_id, pin):
                with wiped(pin):
                    self.driver.verify_pin(self._token(token_id), pin)
                return None
            case ChangePin(token_id, old, new):
                with wiped(old), wiped(new):
                    self.driver.change_pin(self._token(token_id), old, new)
                return None
            case Sign(token_id, cert_id, pin, data, algorithm):
                with wiped(pin):
                    return self.driver.sign(self._token(token_id), cert_id, pin, data, algorithm)

    def scan(self) -> ScanResult:
        self.driver.rescan()
        tokens = self.driver.tokens()
        present = {t.token_id for t in tokens}
        for gone in set(self._certificates) - present:
            del self._certificates[gone]
        views = []
        for token in tokens:
            self._known[token.token_id] = token
            if token.token_id not in self._certificates:
                try:
                    self._certificates[token.token_id] = tuple(self.driver.certificates(token))
                except TokenNotPresent:
                    continue  # pulled out between the two calls
            views.append(TokenView(token, self._certificates[token.token_id]))
        return ScanResult(tuple(views), tuple(self.driver.problems))

    def _token(self, token_id: str) -> Token:
        token = self._known.get(token_id)
        if token is None:
            token = self.driver.find_token(token_id=token_id)
            self._known[token_id] = token
        return token


def serve(conn: Connection, modules: list[str]) -> None:
    """The worker's loop: one request in, one reply out, until the daemon goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's; it stops the workers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    worker = Worker(modules)
    while True:
        try:
            request = wire.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the daemon went away
        try:
            if isinstance(request, Reply):
                raise TypeError("a reply sent to a worker")
            reply = Reply(value=worker.handle(request))
        except CertAgentError as exc:
            reply = Reply(error=exc)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("%s failed", type(request).__name__)
            reply = Reply(error=CertAgentError(type(exc).__name__))
        conn.send_bytes(wire.dumps(reply))
