"""Linux: the owner of a TCP socket, from the kernel's socket tables.

``sock_diag`` (netlink, ``NETLINK_SOCK_DIAG``) is asked for exactly one socket, the peer's,
by its four-tuple: one round trip whatever the number of sockets on the machine. Where netlink
is refused (some sandboxes), ``/proc/net/tcp`` and ``/proc/net/tcp6`` are read instead; their
``uid`` column is the same value. Both see only the caller's network namespace, which is where
a loopback peer is.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
from pathlib import Path

from cert_agent.agent.peers import Address, LocalUser, PortHolder

log = logging.getLogger("cert_agent.peers")

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x01
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
TCP_ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid: source
# port, destination port (network order), source and destination (16 bytes each), interface,
# cookie (two u32). The ports are big-endian and the rest host order, so it is packed in parts.
_REQUEST_HEAD = struct.Struct("=BBBxI")
_PORTS = struct.Struct("!HH")
_SOCKID_TAIL = struct.Struct("=16s16sIII")
# inet_diag_msg: family, state, timer, retransmits (4 bytes), inet_diag_sockid (48), expires,
# rqueue, wqueue, uid, inode
_MESSAGE_SIZE = 4 + _PORTS.size + _SOCKID_TAIL.size + 20
_UID_OFFSET = 4 + _PORTS.size + _SOCKID_TAIL.size + 12


class LinuxPeers:
    def current_user(self) -> LocalUser:
        return LocalUser(str(os.geteuid()))

    def peer_user(self, local: Address, peer: Address) -> LocalUser | None:
        try:
            uid = sock_diag_uid(peer, local)
        except OSError as exc:  # netlink refused here: the /proc tables say the same
            log.debug("sock_diag unavailable (%s); reading /proc/net", exc)
            uid = proc_net_uid(peer, local)
        return None if uid is None else LocalUser(str(uid))

    def port_holders(self, port: int) -> list[PortHolder]:
        holders = []
        for table, family in ((Path("/proc/net/tcp"), socket.AF_INET), (Path("/proc/net/tcp6"), socket.AF_INET6)):
            for columns in _rows(table):
                if columns[3] != TCP_LISTEN or int(columns[1].rsplit(":", 1)[1], 16) != port:
                    continue
                host = _from_proc_address(columns[1].rsplit(":", 1)[0], family)
                pid, command = _socket_process(columns[9])
                uid = int(columns[7])
                holders.append(PortHolder(f"{host}:{port}", _user_name(uid), uid == os.geteuid(), pid, command))
        return holders


def _packed(host: str) -> tuple[int, bytes]:
    address = ipaddress.ip_address(host.split("%")[0])
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, address.packed.ljust(16, b"\0")


def sock_diag_uid(source: Address, destination: Address) -> int | None:
    """The uid owning the TCP socket bound to ``source`` and connected to ``destination``
    (None: no such socket). Raises OSError when netlink cannot be used."""
    family, src = _packed(source[0])
    _, dst = _packed(destination[0])
    request = (
        _REQUEST_HEAD.pack(family, socket.IPPROTO_TCP, 0, TCP_ALL_STATES)
        + _PORTS.pack(source[1], destination[1])
        + _SOCKID_TAIL.pack(src, dst, 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    )
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(header + request, (0, 0))
        reply = nl.recv(8192)
    offset = 0
    while offset + _NLMSGHDR.size <= len(reply):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(reply, offset)
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_ERROR:
            (errno,) = struct.unpack_from("=i", reply, body)
            if errno == 0:
                break
            if -errno == 2:  # ENOENT: the socket is gone (or never was)
                return None
            raise OSError(-errno, os.strerror(-errno))
        if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MESSAGE_SIZE:
            ports = _PORTS.unpack_from(reply, body + 4)
            found_src, found_dst, *_ = _SOCKID_TAIL.unpack_from(reply, body + 4 + _PORTS.size)
            if (ports, found_src, found_dst) == ((source[1], destination[1]), src, dst):
                (uid,) = struct.unpack_from("=I", reply, body + _UID_OFFSET)
                return int(uid)
        if kind == NLMSG_DONE or length == 0:
            break
        offset += (length + 3) & ~3
    return None


TCP_LISTEN = "0A"


def _rows(table: Path) -> list[list[str]]:
    try:
        lines = table.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return []
    return [columns for columns in (line.split() for line in lines) if len(columns) > 9]


def _from_proc_address(text: str, family: int) -> str:
    raw = b"".join(struct.pack("=I", int(text[i : i + 8], 16)) for i in range(0, len(text), 8))
    host = socket.inet_ntop(family, raw)
    return f"[{host}]" if family == socket.AF_INET6 else host


def _user_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _socket_process(inode: str) -> tuple[int | None, str | None]:
    """The process with this socket open, where /proc lets us look (our own, or all as root)."""
    link = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == link:
                    return int(entry.name), (entry / "comm").read_text().strip()
        except OSError:
            continue
    return None, None


def proc_net_uid(source: Address, destination: Address) -> int | None:
    """The same answer from ``/proc/net/tcp`` (IPv4) or ``/proc/net/tcp6`` (IPv6)."""
    family, _ = _packed(source[0])
    table = Path("/proc/net/tcp" if family == socket.AF_INET else "/proc/net/tcp6")
    want = (_proc_address(source), _proc_address(destination))
    for columns in _rows(table):
        if (columns[1], columns[2]) == want:
            return int(columns[7])
    return None


def _proc_address(address: Address) -> str:
    """An address as /proc/net/tcp writes it: each 32-bit word of the address in host order,
    in hexadecimal, then the port."""
    family, packed = _packed(address[0])
    raw = packed[:4] if family == socket.AF_INET else packed
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    return "".join(f"{word:08X}" for word in words) + f":{address[1]:04X}"
