"""What crosses the pipe between the daemon and a module's worker: typed requests and replies.

Requests are frozen dataclasses, sent in a numbered :class:`Envelope`; the worker answers each
with a :class:`Reply` of the same number carrying the value its type promises (a ``ScanResult``,
``None`` or the signature's ``bytes``) or a typed error. Replies come in the order operations
finish, not the order they were sent: a worker serves its tokens at the same time. Nothing is
turned into JSON here: that happens at the WebSocket edge (``server.py``).

A PIN travels as a ``Pin`` from the protocol edge to C_Login. ``Pin`` refuses to be pickled
anywhere else; this module's ``dumps`` is the one place that may pickle it, for the pipe. The
bytes on the pipe are a copy no Python code keeps.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from dataclasses import dataclass

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.models import LibraryProblem, Token, TokenCertificate
from cert_agent.drivers.pin import Pin


@dataclass(frozen=True)
class Scan:
    """List the module's tokens with their certificates (the worker's scan lane)."""


@dataclass(frozen=True)
class VerifyPin:
    token_id: str
    pin: Pin | None  # None: the reader's PIN pad collects it


@dataclass(frozen=True)
class ChangePin:
    token_id: str
    old: Pin | None
    new: Pin | None


@dataclass(frozen=True)
class Sign:
    token_id: str
    cert_id: bytes
    pin: Pin | None  # None: the reader's PIN pad collects it
    data: bytes
    algorithm: SignatureAlgorithm


WorkerRequest = Scan | VerifyPin | ChangePin | Sign


@dataclass(frozen=True)
class TokenView:
    """A token and its certificates, as the daemon keeps and shows it."""

    token: Token
    certificates: tuple[TokenCertificate, ...]

    @property
    def token_id(self) -> str:
        return self.token.token_id

    def certificate(self, cert_id: bytes) -> TokenCertificate | None:
        return next((c for c in self.certificates if c.object_id == cert_id), None)


@dataclass(frozen=True)
class ScanResult:
    tokens: tuple[TokenView, ...]
    problems: tuple[LibraryProblem, ...]


@dataclass(frozen=True)
class Envelope:
    """A request, its number (the reply carries it back) and how long the daemon waits for the
    answer: a request that has not started within ``timeout`` of its arrival (its token is busy
    with a call that hangs) is not started at all, since nobody waits for it any more."""

    number: int
    request: WorkerRequest
    timeout: float


@dataclass(frozen=True)
class Reply:
    """The worker's answer to request ``number``: a value, or the error the operation raised."""

    number: int
    value: ScanResult | bytes | None = None
    error: CertAgentError | None = None


def _pin_for_the_pipe(pin: Pin) -> tuple[type[Pin], tuple[bytes]]:
    return Pin, (pin.reveal(),)


def dumps(message: Envelope | Reply) -> bytes:
    """Pickle a request (PINs included) or a reply for the worker pipe."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[Pin] = _pin_for_the_pipe
    pickler.dump(message)
    return buffer.getvalue()


def loads(data: bytes) -> Envelope | Reply:
    message = pickle.loads(data)
    if not isinstance(message, Envelope | Reply):
        raise TypeError(f"not a worker message: {type(message).__name__}")
    return message
