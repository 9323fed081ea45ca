"""Slow and many clients do not take the verifier down (issue 17, item 4): a real
``cert-verifier serve`` under systemd's default descriptor limit, 1,100 connections that send
one header byte every two seconds, and a health check that must keep being answered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from pathlib import Path

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.verifier import VerifierProcess

SLOW_CONNECTIONS = 1100
ATTACK_SECONDS = 14.0


async def _health(url: str) -> int | str:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
            session.get(f"{url}/api/health") as response,
        ):
            return response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__


async def test_the_verifier_keeps_answering_health_while_1100_slow_clients_hold_connections(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # this side needs 1,100+
    verifier = VerifierProcess(fixtures, tmp_path / "v", settings="request_timeout = 4\n")
    verifier.start(nofile=1024)
    slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(SLOW_CONNECTIONS):
            with contextlib.suppress(OSError):
                slow.append(await asyncio.open_connection("127.0.0.1", verifier.port))
        started = time.monotonic()
        health: list[int | str] = []
        header = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: "
        position = 0
        while time.monotonic() - started < ATTACK_SECONDS:
            byte = header[position % len(header) : position % len(header) + 1]
            position += 1
            for _, writer in slow:
                if not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write(byte)
            health.append(await _health(verifier.url))
            await asyncio.sleep(2)
        closed = sum(1 for reader, _ in slow if reader.at_eof() or _peek_eof(reader))
    finally:
        for _, writer in slow:
            writer.close()
        log = verifier.stop()
    print(f"slow connections {len(slow)}, closed {closed}, health {health}, log bytes {len(log.encode())}")
    assert len(slow) == SLOW_CONNECTIONS
    assert health and set(health) == {200}, health
    assert closed == SLOW_CONNECTIONS  # each one closed by the verifier, none left holding a descriptor
    assert "Traceback" not in log and "Too many open files" not in log
    assert len(log.encode()) < 4096, log[-2000:]


def _peek_eof(reader: asyncio.StreamReader) -> bool:
    return reader.exception() is not None


async def test_health_says_corrupt_when_the_sqlite_file_is_overwritten_under_the_running_verifier(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    verifier = VerifierProcess(fixtures, tmp_path / "v", settings="integrity_interval = 0.5\n")
    verifier.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{verifier.url}/api/health") as before:
                assert before.status == 200 and (await before.json())["database"] == "ok"
            database = tmp_path / "v" / "v.db"
            database.write_bytes(os.urandom(database.stat().st_size))
            await asyncio.sleep(1)  # past the interval: the next health check looks again
            async with session.get(f"{verifier.url}/api/health") as after:
                status, body = after.status, await after.json()
    finally:
        verifier.stop()
    assert status == 503 and body["database"] == "corrupt"
