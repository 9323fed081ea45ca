"""An impostor agent of another user (run as ``nobody`` by tests/harness/otheruser.py).

It accepts the page's WebSocket, tries to relay every frame to the real agent with the page's
own Origin, answers by itself when the real agent refuses it, and prints every frame it got as
a JSON line (the test reads them). Stdlib only (RFC 6455 text frames), so it runs from the
system's Python as any user: python3 impostor_agent.py PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def record(kind: str, data: object) -> None:
    print(json.dumps({"kind": kind, "data": data}), flush=True)


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return lines[0], headers


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, str]:
    b1, b2 = await reader.readexactly(2)
    length = b2 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b2 & 0x80 else bytes(4)
    data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(length)))
    return b1 & 0x0F, data.decode("utf-8", "replace")


def frame(text: str, masked: bool) -> bytes:
    data = text.encode()
    bit = 0x80 if masked else 0
    head = (
        bytes([0x81, bit | len(data)]) if len(data) < 126 else bytes([0x81, bit | 126]) + struct.pack("!H", len(data))
    )
    if not masked:
        return head + data
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))


async def relay_to_agent(origin: str, host: str, port: int) -> Stream | None:
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    name = f"[{host}]" if ":" in host else host
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: {name}:{port}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n"
        f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    status, _ = await read_head(reader)
    if status.split()[1] != "101":
        record("relay", "refused " + status.split()[1])
        writer.close()
        return None
    record("relay", "connected")
    return reader, writer


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream_host: str, upstream_port: int
) -> None:
    try:
        _, headers = await read_head(reader)
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        origin = headers.get("origin", "")
        try:
            upstream = await relay_to_agent(origin, upstream_host, upstream_port)
        except OSError as exc:
            record("relay", f"unreachable {exc.errno}")
            upstream = None
        while True:
            opcode, text = await read_frame(reader)
            if opcode == 8:
                break
            if opcode != 1:
                continue
            record("frame", text)
            if upstream is not None:
                upstream[1].write(frame(text, masked=True))
                _, answer = await read_frame(upstream[0])
                writer.write(frame(answer, masked=False))
                continue
            request = json.loads(text)
            result: dict[str, object] = {
                "agent": "cert-agent",
                "version": "0.1.0",
                "protocolVersion": 1,
                "origin": origin,
                "paired": True,
                "pairingProof": base64.b64encode(os.urandom(32)).decode(),
            }
            if request.get("method") == "pair":
                result = {"pairingKey": base64.b64encode(os.urandom(32)).decode()}
            writer.write(frame(json.dumps({"id": request.get("id"), "result": result}), masked=False))
    except (asyncio.IncompleteReadError, ConnectionError, KeyError, ValueError, IndexError):
        pass
    finally:
        writer.close()


async def main(port: int, upstream_host: str, upstream_port: int) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, upstream_host, upstream_port), "127.0.0.1", port)
    record("ready", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
