"""What runs inside a library's worker process: a driver serving typed requests, one thread per
token.

The daemon keeps vendor libraries out of its own process: a library that crashes takes only its
worker with it, and the daemon's memory holds none. There is one worker per library (PKCS#11
module or SKF library), with the driver ``drivers.factory.open_driver`` picks for it. Inside it
every token has a lane (its requests in order, on a thread of its own while it is served) and
scans have one more, so a token whose call hangs holds up only its own lane: every driver
releases the GIL during library calls. The thread that reads a request serves it (``Lanes``).
Requests and replies are the types of ``protocol.py``; every PIN a request carries is wiped when
the request has been served (or dropped).

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
from collections import deque
from dataclasses import dataclass, field
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


@dataclass
class _Lane:
    """A token's (or the scans') requests: the one being served, and those waiting their turn."""

    waiting: deque[tuple[Envelope, float]] = field(default_factory=deque)


class Lanes:
    """Requests for one token run one after another, in the order they came; requests for
    different tokens at the same time, each on a thread of its own (a token whose call hangs
    holds up only its own requests). Scans are a lane of their own.

    Leader and followers: one thread at a time reads the socket. A request for a token whose lane
    is idle is served by the thread that read it, which first hands the reading to an idle
    thread (or a new one); so a request is served with no hand-off to another thread in between.
    A request for a token being served waits in its lane for the thread serving it, which takes
    it next. A lane a scan no longer sees ends: a call still under way there (one that hangs)
    finishes alone, and the token's next request starts a new lane.
    """

    IDLE_THREADS = 2  # idle threads kept for the next requests; more end

    def __init__(self, worker: Worker, conn: Connection) -> None:
        self._worker = worker
        self._conn = conn
        self._send_lock = threading.Lock()
        self._changed = threading.Condition()  # guards everything below
        self._lanes: dict[str, _Lane] = {}
        self._reader = False  # a thread is reading, or about to
        self._idle = 0  # threads waiting to read
        self._gone = threading.Event()  # the daemon went away

    def run(self) -> None:
        """Serve until the daemon goes away; the calling thread only waits for that."""
        threading.Thread(target=self._follow, name="worker-lane", daemon=True).start()
        self._gone.wait()  # not on the condition: a notify meant for an idle thread must reach one

    def _follow(self) -> None:
        """A thread's life: wait for the reading to be free, read a request, take it; again."""
        while self._become_reader():
            envelope = self._read()
            if envelope is None:
                return
            self._take(envelope, time.monotonic())

    def _become_reader(self) -> bool:
        """Wait until no thread reads, then be the reader (True). False: the daemon went away,
        or enough threads wait already (this one ends)."""
        with self._changed:
            if self._reader and not self._gone.is_set():
                if self._idle >= self.IDLE_THREADS:
                    return False
                self._idle += 1
                self._changed.wait_for(lambda: not self._reader or self._gone.is_set())
                self._idle -= 1
            if self._gone.is_set():
                return False
            self._reader = True
            return True

    def _read(self) -> Envelope | None:
        """The next request (None: the daemon went away, and every thread is told)."""
        while True:
            try:
                message = wire.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                message = None
            except Exception as exc:  # not the daemon speaking: end, and the daemon starts a new worker
                # the type only: the bytes (a request may carry a PIN) stay out of the log
                log.error("a message from the daemon could not be read: %s", type(exc).__name__)
                message = None
            if message is None:
                with self._changed:
                    self._gone.set()
                    self._changed.notify_all()
                return None
            if isinstance(message, Envelope):
                return message
            log.error("not a request: %s", type(message).__name__)

    def _take(self, envelope: Envelope, arrived: float) -> None:
        """Queue the request behind its lane's, or serve it here (the reading handed on first)."""
        name = _lane_name(envelope.request)
        with self._changed:
            self._reader = False
            lane = self._lanes.get(name)
            if lane is not None:
                lane.waiting.append((envelope, arrived))
                return  # this thread goes on reading
            lane = self._lanes[name] = _Lane()
            if self._idle:
                self._changed.notify()
            else:
                threading.Thread(target=self._follow, name="worker-lane", daemon=True).start()
        self._serve_lane(name, lane, envelope, arrived)

    def _serve_lane(self, name: str, lane: _Lane, envelope: Envelope, arrived: float) -> None:
        while True:
            self._serve(envelope, arrived)
            with self._changed:
                if lane.waiting:
                    envelope, arrived = lane.waiting.popleft()
                    continue
                if self._lanes.get(name) is lane:
                    del self._lanes[name]
                return

    def _serve(self, envelope: Envelope, arrived: float) -> None:
        request = envelope.request
        try:
            if time.monotonic() - arrived > envelope.timeout:
                _wipe(request)  # its token was busy too long: the daemon has answered it already
                raise TokenTimeout(getattr(request, "token_id", SCAN_LANE))
            value = self._worker.handle(request)
            if isinstance(value, ScanResult):
                self._end_lanes_except({view.token_id for view in value.tokens})
            reply = Reply(envelope.number, value=value)
        except CertAgentError as exc:
            reply = Reply(envelope.number, error=exc)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("%s failed", type(request).__name__)
            reply = Reply(envelope.number, error=CertAgentError(type(exc).__name__))
        with self._send_lock, contextlib.suppress(OSError):  # OSError: the daemon went away
            self._conn.send_bytes(wire.dumps(reply))

    def _end_lanes_except(self, present: set[str]) -> None:
        """The lanes of tokens that went away end: their token's next request starts anew, not
        behind a call that may hang; what waited there is still answered by that lane's thread."""
        with self._changed:
            for name in [name for name in self._lanes if name != SCAN_LANE and name not in present]:
                del self._lanes[name]


def _lane_name(request: WorkerRequest) -> str:
    return SCAN_LANE if isinstance(request, Scan) else request.token_id


def _wipe(request: WorkerRequest) -> None:
    for name in ("pin", "old", "new"):
        pin = getattr(request, name, None)
        if pin is not None:
            pin.wipe()


def serve(conn: Connection, module: str) -> None:
    """The worker's loop: requests in, each to its token's lane; ends when the daemon goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's; it stops the workers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    use_safe_text("%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    log_writer = write_in_background()  # the daemon's stderr: a stall there must not stop a lane
    Lanes(Worker(module), conn).run()  # until the daemon goes away
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
