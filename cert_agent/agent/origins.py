"""Which web pages may use the agent: the Origin and Host checks made before the upgrade.

An origin is allowed only when it equals a configured origin exactly (scheme, host and port;
no wildcards). https is required, except for loopback origins (http://127.0.0.1:8080, ...)
that the configuration names explicitly, which is what local development and the demo use.
The Host header must name the agent itself on a loopback address, which defeats DNS
rebinding: a page on evil.test that rebinds its name to 127.0.0.1 still sends Host: evil.test.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_DEFAULT_PORTS = {"https": 443, "http": 80}


class OriginConfigError(ValueError):
    """A configured origin that can never be matched safely (refused at start-up)."""


def normalize_origin(text: str) -> str:
    """The serialized form browsers send (RFC 6454): lower-case scheme and host, no default
    port, no path. Raises OriginConfigError for anything that is not a plain origin."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise OriginConfigError(f"{text!r}: the scheme must be https (or http for loopback)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise OriginConfigError(f"{text!r}: an origin has no path, query, fragment or user")
    host = (parts.hostname or "").lower()
    if not host or "*" in host:
        raise OriginConfigError(f"{text!r}: an origin names one host, without wildcards")
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise OriginConfigError(f"{text!r}: {exc}") from None
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise OriginConfigError(f"{text!r}: http is allowed only for loopback origins; use https")
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class OriginPolicy:
    allowed: frozenset[str]
    port: int

    @classmethod
    def from_config(cls, origins: list[str], port: int) -> OriginPolicy:
        return cls(frozenset(normalize_origin(o) for o in origins), port)

    def origin_refusal(self, origin: str | None) -> str | None:
        """Why this Origin header is refused, or None when it is allowed."""
        if origin is None or origin == "":
            return "missing Origin"
        if origin == "null":
            return "opaque origin (null)"
        if origin not in self.allowed:
            return "origin not allowed"
        return None

    def host_refusal(self, host: str | None) -> str | None:
        """Why this Host header is refused, or None when it names the agent on loopback."""
        if not host:
            return "missing Host"
        allowed = {f"{name}:{self.port}" for name in LOOPBACK_HOSTS}
        if host.lower() not in allowed:
            return "Host is not the agent's loopback address"
        return None
