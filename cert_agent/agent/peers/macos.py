"""macOS: the owner of a TCP connection, from ``lsof`` (part of the base system).

``lsof -F`` names the process with the peer's end of the connection and its login uid. One
process start per connection: slower than the kernel tables Linux offers, and only at the
handshake. Built, not tested in CI (no macOS machine), see the README.
"""

from __future__ import annotations

import os
import subprocess

from cert_agent.agent.peers import Address, LocalUser, PortHolder

LSOF = "/usr/sbin/lsof"


class MacPeers:
    def current_user(self) -> LocalUser:
        return LocalUser(str(os.geteuid()))

    def peer_user(self, local: Address, peer: Address) -> LocalUser | None:
        name = f"{_host(peer)}:{peer[1]}->{_host(local)}:{local[1]}"
        out = _lsof("-a", f"-iTCP@{_host(peer)}:{peer[1]}", "-Fnu")
        uid: str | None = None
        for line in out.splitlines():  # p<pid>, u<uid>, then f<fd>, n<name> per open file
            if line.startswith("u"):
                uid = line[1:]
            elif line.startswith("n") and line[1:] == name and uid is not None:
                return LocalUser(uid)
        return None

    def port_holders(self, port: int) -> list[PortHolder]:
        out = _lsof(f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpcun")
        holders, pid, command, uid = [], None, None, "?"
        for line in out.splitlines():
            kind, value = line[:1], line[1:]
            if kind == "p":
                pid, command, uid = int(value), None, "?"
            elif kind == "c":
                command = value
            elif kind == "u":
                uid = value
            elif kind == "n":
                holders.append(PortHolder(value, f"uid {uid}", uid == str(os.geteuid()), pid, command))
        return holders


def _lsof(*args: str) -> str:
    """lsof's field output ("" when it cannot run)."""
    try:
        return subprocess.run([LSOF, "-nP", *args], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _host(address: Address) -> str:
    return f"[{address[0]}]" if ":" in address[0] else address[0]
