"""Processes of another local user: the attacker on a shared PC or terminal server.

CI runs as root, so a test can run a process as ``nobody`` (uid 65534) through subprocess's
``user=``/``group=``. The client is a stand-alone stdlib script run by the system's Python, so
it needs nothing from the checkout that another user might not be allowed to read.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OTHER_UID = 65534  # nobody
OTHER_GID = 65534

HANDSHAKE_SCRIPT = textwrap.dedent(
    r"""
    import base64, json, os, socket, sys
    host, port, origin = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(10)
        s.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        name = f"[{host}]" if ":" in host else host
        s.sendall((
            f"GET /ws HTTP/1.1\r\nHost: {name}:{port}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        ).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        lines = [line.lower() for line in head.split(b"\r\n")]
        length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        print(json.dumps({"status": status, "body": body.decode("utf-8", "replace"), "uid": os.getuid()}))
    """
)


@dataclass(frozen=True)
class Handshake:
    status: int
    body: str
    uid: int

    def json(self) -> Any:
        return json.loads(self.body)


AS_OTHER_USER: dict[str, Any] = {"cwd": "/", "user": OTHER_UID, "group": OTHER_GID, "extra_groups": []}


def can_switch_user() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0


def handshake(host: str, port: int, origin: str, *, uid: int | None = OTHER_UID) -> Handshake:
    """One WebSocket upgrade request from a process of ``uid`` (None: this process's user)."""
    extra: dict[str, Any] = {"cwd": "/"} if uid is None else {**AS_OTHER_USER, "user": uid}
    done = subprocess.run(
        ["/usr/bin/python3", "-c", HANDSHAKE_SCRIPT, host, str(port), origin],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        **extra,
    )
    reply = json.loads(done.stdout)
    return Handshake(reply["status"], reply["body"], reply["uid"])


LISTEN_SCRIPT = textwrap.dedent(
    r"""
    import socket, sys, time
    host, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family)
    s.bind((host, port))
    s.listen(16)
    print("listening", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


@contextlib.contextmanager
def listener_of_another_user(host: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """A process of ``nobody`` listening on ``host:port`` (a port squatter) until the block ends."""
    process = subprocess.Popen(
        ["/usr/bin/python3", "-c", LISTEN_SCRIPT, host, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **AS_OTHER_USER,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "listening"
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def bind_as_another_user(host: str, port: int) -> str:
    """Try to listen on ``host:port`` as ``nobody``: "bound" or the error's name."""
    script = textwrap.dedent(
        r"""
        import errno, socket, sys
        host, port = sys.argv[1], int(sys.argv[2])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port)); s.listen(1); print("bound")
        except OSError as exc:
            print(errno.errorcode[exc.errno])
        """
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-c", script, host, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        **AS_OTHER_USER,
    )
    return str(done.stdout).strip()


IMPOSTOR_SCRIPT = (Path(__file__).parent / "impostor_agent.py").read_text(encoding="utf-8")


@contextlib.contextmanager
def impostor_of_another_user(port: int, upstream: tuple[str, int]) -> Iterator[list[dict[str, Any]]]:
    """An impostor agent of ``nobody`` on 127.0.0.1:``port`` that relays to the agent at
    ``upstream`` (host, port) when it can; the list it yields fills with what it received once
    the block ends."""
    process = subprocess.Popen(
        ["/usr/bin/python3", "-c", IMPOSTOR_SCRIPT, str(port), upstream[0], str(upstream[1])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        **AS_OTHER_USER,
    )
    received: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["kind"] == "ready"
        yield received
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
        received.extend(json.loads(line) for line in out.splitlines() if line.strip())
