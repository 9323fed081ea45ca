"""What runs inside a library's worker process: a driver serving typed requests, one thread per
token.

The daemon keeps vendor libraries out of its own process: a library that crashes takes only its
worker with it, and the daemon's memory holds none. There is one worker per library (PKCS#11
module or SKF library), with the driver ``drivers.factory.open_driver`` picks for it. Inside it
every token has a lane (a thread of its own) and scans have one more, so a token whose call hangs
holds up only its own lane: every driver releases the GIL during library calls. Requests and
replies are the types of ``protocol.py``;
every PIN a request carries is wiped when the request has been served (or dropped).

Started as ``python -m cert_agent.agent.workers.child FD MODULE`` (``process.py``) with FD one end of a
socket pair; on Windows through multiprocessing (``serve`` with a pipe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from cert_agent.agent.errors import TokenTimeout
from cert_agent.agent.workers import protocol as wire
from cert_agent.agent.workers.protocol import (
    ChangePin,
    Envelope,
    Reply,
    Scan,
    ScanResult,
    Sign,
    TokenView,
    VerifyPin,
    WorkerRequest,
)
from cert_agent.common.errors import CertAgentError
from cert_agent.common.logtext import use_safe_text
from cert_agent.common.logthread import write_in_background
from cert_agent.drivers.errors import TokenNotPresent
from cert_agent.drivers.factory import open_driver
from cert_agent.drivers.models import Token, TokenCertificate
from cert_agent.drivers.pin import wiped

log = logging.getLogger("cert_agent.worker")
SCAN_LANE = "scan"


class Worker:
    """One library's driver, the tokens it has seen, and their certificates (read once per
    inserted token). Safe to call from the lanes' threads at the same time."""

    def __init__(self, module: str) -> None:
        # No count of wrong PINs here: the daemon keeps it per token, so it survives a restart
        # of this process. Tries left reported from here are the medium's own word only.
        self.driver = open_driver([module])
        self._known: dict[str, Token] = {}
        self._certificates: dict[str, tuple[TokenCertificate, ...]] = {}

    def handle(self, request: WorkerRequest) -> ScanResult | bytes | None:
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
                    # Read what signing needs now: the first PIN a user types then costs what
                    # every later one does.
                    self.driver.prepare(token)
                except TokenNotPresent:
                    continue  # pulled out between the two calls
                except CertAgentError as exc:
                    log.warning("reading token %s failed: %s", token.serial, exc.describe())
                    continue
            views.append(TokenView(token, self._certificates[token.token_id]))
        return ScanResult(tuple(views), tuple(self.driver.problems))

    def _token(self, token_id: str) -> Token:
        token = self._known.get(token_id)
        if token is None:
            token = self.driver.find_token(token_id=token_id)
            self._known[token_id] = token
        return token


class Lanes:
    """A thread per token (and one for scans): requests for one token run one after another, in
    the order they came; requests for different tokens at the same time."""

    def __init__(self, worker: Worker, conn: Connection) -> None:
        self._worker = worker
        self._conn = conn
        self._send_lock = threading.Lock()
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._lanes_lock = threading.Lock()  # the main thread adds lanes, the scan lane too

    def submit(self, envelope: Envelope) -> None:
        request = envelope.request
        name = SCAN_LANE if isinstance(request, Scan) else request.token_id
        self._run_in(name, self._serve, envelope, time.monotonic())

    def _serve(self, envelope: Envelope, arrived: float) -> None:
        request = envelope.request
        try:
            if time.monotonic() - arrived > envelope.timeout:
                _wipe(request)  # its token was busy too long: the daemon has answered it already
                raise TokenTimeout(getattr(request, "token_id", SCAN_LANE))
            value = self._worker.handle(request)
            if isinstance(value, ScanResult):
                self._keep_lanes({view.token_id for view in value.tokens})
            reply = Reply(envelope.number, value=value)
        except CertAgentError as exc:
            reply = Reply(envelope.number, error=exc)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("%s failed", type(request).__name__)
            reply = Reply(envelope.number, error=CertAgentError(type(exc).__name__))
        with self._send_lock, contextlib.suppress(OSError):  # OSError: the daemon went away
            self._conn.send_bytes(wire.dumps(reply))

    def _keep_lanes(self, present: set[str]) -> None:
        """A lane for every token present, its thread started now (so a token's first request
        waits for no thread to start); the lanes of tokens that went away end (a hung call's
        thread ends with its call)."""
        with self._lanes_lock:
            for name in list(self._lanes):
                if name != SCAN_LANE and name not in present:
                    self._lanes.pop(name).shutdown(wait=False)
            new = present - self._lanes.keys()
        for name in new:
            self._run_in(name, _nothing)  # starts the lane's thread

    def _run_in(self, name: str, function: Callable[..., None], *args: object) -> None:
        """Run ``function`` in the lane ``name`` (made if need be), after what is queued there.
        Under the lock that lanes are ended under, so nothing goes into a lane being ended."""
        with self._lanes_lock:
            lane = self._lanes.get(name)
            if lane is None:
                lane = self._lanes[name] = ThreadPoolExecutor(1, thread_name_prefix=f"lane-{name}")
            lane.submit(function, *args)


def _nothing() -> None:
    pass


def _wipe(request: WorkerRequest) -> None:
    for field in ("pin", "old", "new"):
        pin = getattr(request, field, None)
        if pin is not None:
            pin.wipe()


def serve(conn: Connection, module: str) -> None:
    """The worker's loop: requests in, each to its token's lane; ends when the daemon goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's; it stops the workers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    use_safe_text("%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    log_writer = write_in_background()  # the daemon's stderr: a stall there must not stop a lane
    lanes = Lanes(Worker(module), conn)
    while True:
        try:
            message = wire.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break  # the daemon went away
        if not isinstance(message, Envelope):
            log.error("not a request: %s", type(message).__name__)
            continue
        lanes.submit(message)
    # Leave without waiting for the lanes: a call that hangs in a module never returns.
    log_writer.stop()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str]) -> None:
    """``python -m cert_agent.agent.workers.child FD MODULE``: serve ``MODULE`` over socket ``FD``."""
    fd, module = int(argv[0]), argv[1]
    os.dup2(2, 1)  # what a module prints goes to stderr; stdout is the daemon's
    serve(Connection(fd), module)


if __name__ == "__main__":
    main(sys.argv[1:])
