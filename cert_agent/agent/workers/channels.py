"""The daemon's end of a worker's connection: frames out, frames in, on the event loop.

Both ends frame messages as ``multiprocessing.connection`` does (a 4-byte big-endian signed
length, or -1 and an 8-byte one, then the bytes); the worker uses ``Connection`` itself.

- :class:`SocketChannel` (Linux, macOS): the event loop reads the socket itself when it is
  readable, so a reply reaches the waiting request with no thread in between (a reader thread
  and its hand-off to the loop cost about 0.2 ms per call on a 2-core machine, see
  ``docs/performance.md``).
- :class:`PipeChannel` (Windows): multiprocessing's named pipe, which the event loop cannot
  wait on, read by a thread of its own that hands each frame to the loop.

Either one calls ``on_message`` with each frame's bytes and ``on_closed`` once when the worker's
end is gone, both on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol

MAX_FRAME = 64 << 20  # bytes; a worker's scan of many media is well under 1 MB
_READ = 1 << 16


class Channel(Protocol):
    async def send(self, data: bytes) -> None:
        """Send one frame; OSError when the worker's end is gone."""
        ...

    def close(self) -> None: ...


class SocketChannel:
    """A socket the event loop reads and writes (see the module docstring)."""

    def __init__(self, sock: socket.socket, on_message: Callable[[bytes], None], on_closed: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._sock.setblocking(False)
        self._on_message = on_message
        self._on_closed = on_closed
        self._buffer = bytearray()
        self._sending = asyncio.Lock()  # held from a frame's first byte to its last: none interleave
        self._open = True
        self._loop.add_reader(sock.fileno(), self._readable)

    async def send(self, data: bytes) -> None:
        if not self._open:
            raise OSError("the worker's connection is closed")
        frame = _header(len(data)) + data
        await self._sending.acquire()  # one frame at a time; returns at once when no frame is out
        try:
            sent = self._send_now(frame)
        except BaseException:
            self._sending.release()
            raise
        if sent == len(frame):  # the usual case: the socket took it all, no task, no loop turn
            self._sending.release()
            return
        # Shielded: a caller that gives up (a time-out, a page gone) must not leave half a frame.
        await asyncio.shield(self._send_rest(memoryview(frame)[sent:]))

    def _send_now(self, frame: bytes) -> int:
        try:
            return self._sock.send(frame)
        except (BlockingIOError, InterruptedError):
            return 0

    async def _send_rest(self, rest: memoryview) -> None:
        try:
            await self._loop.sock_sendall(self._sock, rest)
        finally:
            self._sending.release()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._on_closed()

    def _readable(self) -> None:
        try:
            chunk = self._sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self._buffer += chunk
        while self._open:
            try:
                frame = _take_frame(self._buffer)
            except ValueError:
                self.close()  # not a worker speaking: nothing more it sends can be trusted
                return
            if frame is None:
                break
            self._on_message(frame)


class PipeChannel:
    """multiprocessing's pipe, read by a thread (see the module docstring)."""

    def __init__(self, conn: Connection, on_message: Callable[[bytes], None], on_closed: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = conn
        self._on_message = on_message
        self._on_closed = on_closed
        threading.Thread(target=self._read, name="worker replies", daemon=True).start()

    async def send(self, data: bytes) -> None:
        self._conn.send_bytes(data)

    def close(self) -> None:
        pass  # the reader sees the end of the pipe and closes it, never under a read in progress

    def _read(self) -> None:
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                self._loop.call_soon_threadsafe(self._on_message, data)
            except RuntimeError:  # the loop is closed: nobody waits
                break
        self._conn.close()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_closed)


def _header(size: int) -> bytes:
    if size > 0x7FFFFFFF:
        return (-1).to_bytes(4, "big", signed=True) + size.to_bytes(8, "big")
    return size.to_bytes(4, "big", signed=True)


def _take_frame(buffer: bytearray) -> bytes | None:
    """The first whole frame in ``buffer``, removed from it; None while it is incomplete.
    ValueError for a length no worker sends."""
    if len(buffer) < 4:
        return None
    size, start = int.from_bytes(buffer[:4], "big", signed=True), 4
    if size == -1:
        if len(buffer) < 12:
            return None
        size, start = int.from_bytes(buffer[4:12], "big"), 12
    if size < 0 or size > MAX_FRAME:
        raise ValueError(f"a worker frame of {size} bytes")
    if len(buffer) < start + size:
        return None
    frame = bytes(buffer[start : start + size])
    del buffer[: start + size]
    return frame
