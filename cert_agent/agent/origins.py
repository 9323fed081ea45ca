"""Which web pages may use the agent: the Origin and Host checks made before the upgrade.

An origin is allowed only when it equals a configured origin exactly (scheme, host and port;
no wildcards). https is required, except for loopback origins (http://127.0.0.1:8080, ...)
that the configuration names explicitly, which is what local development and the demo use.
The Host header must name the agent itself on a loopback address, which defeats DNS
rebinding: a page on evil.test that rebinds its name to 127.0.0.1 still sends Host: evil.test.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_DEFAULT_PORTS = {"https": 443, "http": 80}


class OriginConfigError(ValueError):
    """A configured origin that can never be matched safely (refused at start-up)."""


_ORIGIN = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+)(?::(?P<port>[0-9]{1,5}))?/?$"
)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_origin(text: str) -> str:
    """The serialized form browsers send (RFC 6454): lower-case scheme and host, the host in
    IDNA 2008 A-labels (a Chinese domain name becomes its xn-- form), no default port, no path.
    Only what a browser could send is accepted: a scheme, a host that is a DNS name, an IPv4
    address or a bracketed IPv6 address, a port from 1 to 65535, and nothing else (no
    whitespace, quotes, backslashes, commas, user or path). Anything else raises
    OriginConfigError naming what is wrong."""
    match = _ORIGIN.match(text)
    if match is None:
        raise OriginConfigError(f"{text!r}: not an origin (scheme://host[:port], nothing else)")
    scheme = match["scheme"].lower()
    if scheme not in _DEFAULT_PORTS:
        raise OriginConfigError(f"{text!r}: the scheme must be https (or http for loopback)")
    host = _host(text, match["host"])
    port = int(match["port"]) if match["port"] is not None else None
    if port is not None and not 1 <= port <= 65535:
        raise OriginConfigError(f"{text!r}: the port must be from 1 to 65535")
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise OriginConfigError(f"{text!r}: http is allowed only for loopback origins; use https")
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host(text: str, host: str) -> str:
    """The host as browsers serialize it, or OriginConfigError."""
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise OriginConfigError(f"{text!r}: {host} is not an IPv6 address") from None
    if "*" in host:
        raise OriginConfigError(f"{text!r}: an origin names one host, without wildcards")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise OriginConfigError(f"{text!r}: {host} is not an IPv4 address") from None
    try:
        ascii_host = idna.encode(host.lower() if host.isascii() else host, uts46=False).decode("ascii")
    except idna.IDNAError as exc:
        raise OriginConfigError(f"{text!r}: {host!r} is not a valid host name ({exc})") from None
    labels = ascii_host.lower().split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise OriginConfigError(f"{text!r}: {host!r} is not a valid host name")
    return ".".join(labels)


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
