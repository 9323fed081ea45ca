"""A virtual smart card for vsmartcard's virtual reader (vpcd), and the pcscd it plugs into.

vpcd (Debian's vsmartcard-vpcd) adds the readers "Virtual PCD 00 00" and "Virtual PCD 00 01" to
pcscd and waits for a card on 127.0.0.1:35963 and :35964. The card is inserted while its TCP
connection is open. Each message is a 2-byte big-endian length and a payload; from the reader,
a one-byte payload is 0 (power off), 1 (power on), 2 (reset) or 4 (send the ATR, which the card
answers with its ATR); longer payloads are command APDUs, answered with a response APDU. This
card answers every APDU with 6D 00 (instruction not supported): enough for pcscd to see it, its
ATR to be read and the agent to look for its driver. (Debian's own emulator, vicc, does not run
here: see shared/research.)
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

VPCD_PORTS = (0x8C7B, 0x8C7C)  # readers "Virtual PCD 00 00" and "Virtual PCD 00 01"
READER_NAMES = ("Virtual PCD 00 00", "Virtual PCD 00 01")
TEST_UKEY_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # the catalog's test entry


def vpcd_available() -> bool:
    return Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists() and shutil.which("pcscd") is not None


class VirtualCard:
    def __init__(self, atr: bytes = TEST_UKEY_ATR, reader: int = 0) -> None:
        self.atr = atr
        self.port = VPCD_PORTS[reader]
        self.reader_name = READER_NAMES[reader]
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def insert(self) -> None:
        """Connect to vpcd (retrying while pcscd brings the reader up) and answer it."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self._socket = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._socket.settimeout(None)
        self._thread = threading.Thread(target=self._serve, args=(self._socket,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        if self._socket is not None:
            self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._socket = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                header = _read(sock, 2)
                payload = _read(sock, struct.unpack(">H", header)[0])
                if len(payload) == 1:
                    if payload[0] == 4:
                        sock.sendall(struct.pack(">H", len(self.atr)) + self.atr)
                    continue  # power off / on / reset: nothing to answer
                sock.sendall(struct.pack(">H", 2) + b"\x6d\x00")
        except OSError:
            return


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("vpcd closed the connection")
        data += chunk
    return data


class Pcscd:
    """pcscd in the foreground, started if none runs (CI machines have no service manager)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, check=False).returncode == 0:
            return  # one runs already (the system's): vpcd's readers are in it if it started after install
        self.process = subprocess.Popen(["pcscd", "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _readers_present():
            if time.monotonic() > deadline:
                raise RuntimeError("pcscd did not show vpcd's readers")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _readers_present() -> bool:
    try:
        from smartcard.System import readers

        return any(str(r).startswith("Virtual PCD") for r in readers())
    except Exception:
        return False
