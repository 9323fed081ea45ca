"""Errors of the agent daemon: its protocol, its limits, its processes and its one instance."""

from __future__ import annotations

from cert_agent.common.errors import CertAgentError


class TokenTimeout(CertAgentError):
    code = "TOKEN_TIMEOUT"


class WorkerFailed(CertAgentError):
    code = "WORKER_FAILED"


class UnknownMethod(CertAgentError):
    code = "UNKNOWN_METHOD"


class UnsupportedProtocol(CertAgentError):
    code = "UNSUPPORTED_PROTOCOL"


class RateLimited(CertAgentError):
    """Too many wrong PINs from this page or connection; ``retryAfter`` is in seconds."""

    code = "RATE_LIMITED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retryAfter=retry_after)


class PinTriesReserved(CertAgentError):
    """The PIN was not presented: the medium's last try is kept for the user's own action, or
    this site has spent its share of the medium's tries in a row (``triesLeft`` when known)."""

    code = "PIN_TRIES_RESERVED"


class AgentAlreadyRunning(CertAgentError):
    """Another cert-agent process of this user holds the per-user lock (``pid``, ``port``)."""

    code = "AGENT_ALREADY_RUNNING"


class ListenFailed(CertAgentError):
    """No port of the agent's range could be held on every loopback address (``ports``, and
    ``holders``: who listens there); ``serve`` exits with 4."""

    code = "LISTEN_FAILED"


class PrivateDirUnsafe(CertAgentError):
    """A folder or file the agent keeps private (its lock, its pairing keys) is a link, another
    user's, or cannot be made (``path``); ``serve`` exits with 5."""

    code = "PRIVATE_DIR_UNSAFE"


class OriginRefused(CertAgentError):
    """The WebSocket handshake was refused (HTTP 403): origin or Host not allowed."""

    code = "ORIGIN_REFUSED"


class UserRefused(CertAgentError):
    """The WebSocket handshake was refused (HTTP 403): the connection comes from a process of
    another local user (or one whose owner the OS would not tell)."""

    code = "USER_REFUSED"


class MediumDriverMissing(CertAgentError):
    """A card is in a reader, but no loaded PKCS#11 module shows a token for it."""

    code = "MEDIUM_DRIVER_MISSING"
