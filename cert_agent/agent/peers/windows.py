"""Windows: the owner of a TCP connection, from the TCP table and the owning process's token.

``GetExtendedTcpTable`` (TCP_TABLE_OWNER_PID_CONNECTIONS) names the process at the peer's end;
its access token names its user (a SID) and ``ProcessIdToSessionId`` its logon session, so on
a terminal server the same account in another session is another user here. Built on ctypes
over iphlpapi, kernel32 and advapi32; not tested in CI (no Windows machine), see the README.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
from ctypes import wintypes
from typing import Any

from cert_agent.agent.peers import Address, LocalUser, PortHolder

TCP_TABLE_OWNER_PID_LISTENER = 3
TCP_TABLE_OWNER_PID_CONNECTIONS = 4
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1
ERROR_INSUFFICIENT_BUFFER = 122


class _Row4(ctypes.Structure):  # MIB_TCPROW_OWNER_PID
    _fields_ = [(n, wintypes.DWORD) for n in ("state", "local", "local_port", "remote", "remote_port", "pid")]


class _Row6(ctypes.Structure):  # MIB_TCP6ROW_OWNER_PID
    _fields_ = [
        ("local", ctypes.c_ubyte * 16),
        ("local_scope", wintypes.DWORD),
        ("local_port", wintypes.DWORD),
        ("remote", ctypes.c_ubyte * 16),
        ("remote_scope", wintypes.DWORD),
        ("remote_port", wintypes.DWORD),
        ("state", wintypes.DWORD),
        ("pid", wintypes.DWORD),
    ]


def _dll(name: str) -> Any:
    return getattr(ctypes, "WinDLL")(name, use_last_error=True)  # noqa: B009 (absent elsewhere: mypy)


class WindowsPeers:
    def current_user(self) -> LocalUser:
        return _process_user(os.getpid()) or LocalUser("unknown")

    def peer_user(self, local: Address, peer: Address) -> LocalUser | None:
        pid = _owning_pid(peer, local)
        return None if pid is None else _process_user(pid)

    def port_holders(self, port: int) -> list[PortHolder]:
        holders = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for row in _rows(family, TCP_TABLE_OWNER_PID_LISTENER):
                if _port(row.local_port) == port:
                    user = _process_user(int(row.pid))
                    host = _row_address(row.local, family)
                    mine = user is not None and user == self.current_user()
                    holders.append(PortHolder(f"{host}:{port}", str(user or "?"), mine, int(row.pid)))
        return holders


def _port(value: int) -> int:
    return socket.ntohs(value & 0xFFFF)


def _rows(family: int, table_class: int) -> list[Any]:
    """The rows of the TCP table of ``family`` (MIB_TCPROW_OWNER_PID or its IPv6 form)."""
    row_type: type[ctypes.Structure] = _Row4 if family == socket.AF_INET else _Row6
    iphlpapi = _dll("iphlpapi")
    size = wintypes.DWORD(0)
    iphlpapi.GetExtendedTcpTable(None, ctypes.byref(size), False, family, table_class, 0)
    buffer = ctypes.create_string_buffer(size.value + 4096)
    size = wintypes.DWORD(len(buffer))
    if iphlpapi.GetExtendedTcpTable(buffer, ctypes.byref(size), False, family, table_class, 0):
        return []
    count = wintypes.DWORD.from_buffer(buffer).value
    return list((row_type * count).from_buffer(buffer, ctypes.sizeof(wintypes.DWORD)))


def _row_bytes(value: Any, family: int) -> bytes:
    return int(value).to_bytes(4, "little") if family == socket.AF_INET else bytes(value)


def _row_address(value: Any, family: int) -> str:
    host = socket.inet_ntop(family, _row_bytes(value, family))
    return f"[{host}]" if family == socket.AF_INET6 else host


def _owning_pid(source: Address, destination: Address) -> int | None:
    want_local = ipaddress.ip_address(source[0].split("%")[0]).packed
    want_remote = ipaddress.ip_address(destination[0].split("%")[0]).packed
    family = socket.AF_INET if len(want_local) == 4 else socket.AF_INET6
    for row in _rows(family, TCP_TABLE_OWNER_PID_CONNECTIONS):
        found = (_row_bytes(row.local, family), _port(row.local_port), _row_bytes(row.remote, family))
        if found == (want_local, source[1], want_remote) and _port(row.remote_port) == destination[1]:
            return int(row.pid)
    return None


def _process_user(pid: int) -> LocalUser | None:
    kernel32, advapi32 = _dll("kernel32"), _dll("advapi32")
    process = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not process:
        return None
    token = wintypes.HANDLE()
    try:
        if not advapi32.OpenProcessToken(process, TOKEN_QUERY, ctypes.byref(token)):
            return None
        try:
            size = wintypes.DWORD(0)
            advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
            info = ctypes.create_string_buffer(size.value)
            if not advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, info, size, ctypes.byref(size)):
                return None
            sid = ctypes.c_void_p.from_buffer(info).value  # TOKEN_USER starts with the SID's pointer
            text = wintypes.LPWSTR()
            if not advapi32.ConvertSidToStringSidW(ctypes.c_void_p(sid), ctypes.byref(text)):
                return None
            user = str(text.value)
            kernel32.LocalFree(text)
        finally:
            kernel32.CloseHandle(token)
    finally:
        kernel32.CloseHandle(process)
    session = wintypes.DWORD()
    if not kernel32.ProcessIdToSessionId(pid, ctypes.byref(session)):
        return None
    return LocalUser(user, int(session.value))
