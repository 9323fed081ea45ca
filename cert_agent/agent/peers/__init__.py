"""Which local user owns the other end of a loopback TCP connection.

On loopback the Origin header is only a string: any local process can send the tax site's
origin. What it cannot choose is the account it runs as. The agent serves only connections
whose peer socket belongs to its own user (and, on Windows, to its own logon session), and
refuses every other before the WebSocket upgrade.

Each operating system answers the question in its own way, behind one function:

- Linux (``linux.py``): the kernel's sock_diag netlink interface, asked for the one socket with
  the peer's four-tuple; ``/proc/net/tcp`` and ``tcp6`` when netlink is unavailable. Tested with
  real processes of another uid.
- Windows (``windows.py``): the owning process of the connection from the TCP table, then that
  process's user (SID) and session. Built, not tested here (no Windows machine in CI).
- macOS (``macos.py``): the owning process from ``lsof``, then its uid. Built, not tested here.

The same tables say who listens on a port (``port_holders``), for the message of an agent that
cannot hold its port and for ``doctor``.

An owner that cannot be found (the peer closed meanwhile, the OS does not say) is a refusal:
the check fails closed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from typing import Protocol

Address = tuple[str, int]  # (host, port) as socket.getsockname() gives it, without flow info


@dataclass(frozen=True)
class LocalUser:
    """A local account: a uid on Unix, a SID on Windows, with the logon session where the OS
    has one per connection (Windows terminal servers)."""

    user: str
    session: int | None = None

    def __str__(self) -> str:
        return self.user if self.session is None else f"{self.user} (session {self.session})"


@dataclass(frozen=True)
class PortHolder:
    """A socket listening on a port: on which address, whose, and (when the OS lets us see it)
    which process."""

    address: str
    user: str
    mine: bool  # this process's own user
    pid: int | None = None
    command: str | None = None

    def __str__(self) -> str:
        process = f"，进程 {self.pid} ({self.command or '?'})" if self.pid is not None else ""
        return f"{self.address} 被用户 {self.user} 占用{process}"

    def to_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "user": self.user,
            "mine": self.mine,
            "pid": self.pid,
            "command": self.command,
        }


class Platform(Protocol):
    """What each operating system's module provides."""

    def current_user(self) -> LocalUser: ...

    def peer_user(self, local: Address, peer: Address) -> LocalUser | None: ...

    def port_holders(self, port: int) -> list[PortHolder]: ...


@cache
def current_user() -> LocalUser:
    """The user this process runs as (it does not change while the agent runs)."""
    return platform().current_user()


def peer_user(local: Address, peer: Address) -> LocalUser | None:
    """The owner of the socket at ``peer`` that is connected to our socket at ``local``, or
    None when it cannot be told."""
    return platform().peer_user(local, peer)


def port_holders(port: int) -> list[PortHolder]:
    """Every socket listening on ``port`` (TCP), on any address, by any user."""
    return platform().port_holders(port)


@cache
def platform() -> Platform:
    if sys.platform == "win32":
        from cert_agent.agent.peers.windows import WindowsPeers

        return WindowsPeers()
    if sys.platform == "darwin":
        from cert_agent.agent.peers.macos import MacPeers

        return MacPeers()
    from cert_agent.agent.peers.linux import LinuxPeers

    return LinuxPeers()
