"""What an attacker tried against the agent, kept out: PIN floods, malformed frames, idle and
half-open connections, descriptor exhaustion. Real agents, real SoftHSM2 tokens, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, RunningAgent, certificate_of, connect, free_port, running_agent
from tests.harness.daemon import Daemon

CONCURRENT_ATTEMPTS = 2000


async def _send_all_then_collect(ws: aiohttp.ClientWebSocketResponse, frames: list[str]) -> Counter[str]:
    for frame in frames:
        await ws.send_str(frame)
    codes: Counter[str] = Counter()
    seen: set[object] = set()
    async with asyncio.timeout(60):
        while len(seen) < len(frames):
            message = await ws.receive_json()
            if "event" in message:
                continue
            assert message["id"] not in seen, "two replies to one request"
            seen.add(message["id"])
            codes[message["error"]["code"] if "error" in message else "OK"] += 1
    return codes


def _verify_pin_frames(token_id: str, count: int, prefix: str = "") -> list[str]:
    return [
        json.dumps({"id": f"{prefix}{i}", "method": "verifyPin", "params": {"tokenId": token_id, "pin": "000000"}})
        for i in range(count)
    ]


async def test_concurrent_wrong_pins_on_one_connection_reach_the_token_only_up_to_the_limit(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    async with connect(fresh_agent) as client:
        codes = await _send_all_then_collect(client.ws, _verify_pin_frames(token_id, CONCURRENT_ATTEMPTS))
        right = await client.call("verifyPin", tokenId=token_id, pin="112233")
    limit = fresh_agent.config.pin_failures_per_connection
    assert codes == Counter({"PIN_INCORRECT": limit, "RATE_LIMITED": CONCURRENT_ATTEMPTS - limit})
    assert right["error"]["code"] == "RATE_LIMITED"  # the window is full: not even the right PIN is tried


async def test_concurrent_wrong_pins_from_many_connections_stop_at_the_origin_limit(fresh_fixtures: Fixtures) -> None:
    async with running_agent(fresh_fixtures, pin_max_tries=100) as agent:  # a medium that locks late
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")

        async def tab(number: int) -> Counter[str]:
            async with connect(agent) as client:
                return await _send_all_then_collect(client.ws, _verify_pin_frames(token_id, 5, f"t{number}-"))

        total = sum(await asyncio.gather(*(tab(n) for n in range(10))), Counter())
    limit = agent.config.pin_failures_per_origin
    assert total == Counter({"PIN_INCORRECT": limit, "RATE_LIMITED": 50 - limit})


async def test_a_page_never_spends_the_last_try_of_a_medium_whose_limit_is_known(
    fresh_agent: RunningAgent, fresh_fixtures: Fixtures
) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")

    async def tab(number: int) -> Counter[str]:
        async with connect(fresh_agent) as client:
            return await _send_all_then_collect(client.ws, _verify_pin_frames(token_id, 5, f"t{number}-"))

    total = sum(await asyncio.gather(*(tab(n) for n in range(10))), Counter())
    async with connect(fresh_agent) as client:
        listed = await client.call("listCertificates")
        right = await client.call("verifyPin", tokenId=token_id, pin="112233")
    limit = fresh_agent.config.pin_max_tries
    assert limit == 10
    assert total == Counter({"PIN_INCORRECT": limit - 1, "PIN_TRIES_RESERVED": 50 - (limit - 1)})
    (token,) = [t for t in listed["result"]["tokens"] if t["tokenId"] == token_id]
    assert token["pinState"] == "final_try"  # not "locked": the medium never said so, the PIN field stays
    assert right["error"]["code"] == "PIN_TRIES_RESERVED" and right["error"]["triesLeft"] == 1
    assert "cert-agent verify-pin" in right["error"]["message"]


async def test_wrong_pins_from_several_origins_leave_another_origin_its_tries(fresh_fixtures: Fixtures) -> None:
    hostile = tuple(f"https://etax{n}.example.com" for n in range(3))
    honest = "https://etax.example.com"
    async with running_agent(fresh_fixtures, allowed_origins=(*hostile, honest)) as agent:
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")

        async def page(origin: str) -> Counter[str]:
            async with connect(agent, origin) as client:
                return await _send_all_then_collect(client.ws, _verify_pin_frames(token_id, 5))

        total = sum(await asyncio.gather(*(page(o) for o in hostile)), Counter())
        async with connect(agent, honest) as client:
            right = await client.call("verifyPin", tokenId=token_id, pin="112233")
    share = (10 - 2) // 3  # the others' shares leave at least two of the medium's ten tries
    assert total == Counter({"PIN_INCORRECT": 3 * share, "PIN_TRIES_RESERVED": 15 - 3 * share})
    assert right["result"] == {"verified": True}


async def test_pin_attempts_abandoned_by_closing_the_connection_still_count(fresh_fixtures: Fixtures) -> None:
    async with running_agent(fresh_fixtures, pin_failures_per_origin=1) as agent:
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
        async with connect(agent) as warm:
            assert "result" in await warm.call("verifyPin", tokenId=token_id, pin="112233")  # the worker is up
        (pid,) = agent.service.worker_pids()[token_id]
        os.kill(pid, signal.SIGSTOP)  # hold the attempts in flight, as a slow medium does
        try:
            async with connect(agent) as hit_and_run:
                for frame in _verify_pin_frames(token_id, 5):
                    await hit_and_run.ws.send_str(frame)
                await asyncio.sleep(0.5)  # the first is admitted and at the token: then hang up
        finally:
            os.kill(pid, signal.SIGCONT)
        async with connect(agent) as next_page:
            right = await next_page.call("verifyPin", tokenId=token_id, pin="112233")
    assert right["error"]["code"] == "RATE_LIMITED"


async def test_tries_left_survive_a_worker_restart(fresh_agent: RunningAgent, fresh_fixtures: Fixtures) -> None:
    token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
    async with connect(fresh_agent) as client:
        first = await client.call("verifyPin", tokenId=token_id, pin="000000")
        (pid,) = fresh_agent.service.worker_pids()[token_id]
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        replies = [await client.call("verifyPin", tokenId=token_id, pin="000000") for _ in range(2)]
        second = next(r for r in replies if r["error"]["code"] == "PIN_INCORRECT")
    assert first["error"]["triesLeft"] == 9
    assert second["error"]["triesLeft"] == 8
    assert fresh_agent.service.worker_pids()[token_id] != [pid]


async def test_lone_surrogates_huge_numbers_and_deep_nesting_get_exactly_one_error_reply(
    agent: RunningAgent, fixtures: Fixtures
) -> None:
    token_id, _ = certificate_of(fixtures, "hairun-ec")
    frames = [
        '{"id": "\\ud800", "method": "hello"}',
        '{"id": 1, "method": "\\udfff"}',
        '{"id": 2, "method": "verifyPin", "params": {"tokenId": "' + token_id + '", "pin": "12\\ud83d"}}',
        '{"id": ' + "9" * 5000 + ', "method": "hello"}',
        '{"id": 3, "method": "hello", "params": {"x": ' + "1" * 5000 + "}}",
        '{"id": 4, "method": "hello", "params": ' + "[" * 100 + "]" * 100 + "}",
        '{"id": 5, "method": "hello", "params": {"\\ud800": 1}}',
    ]
    async with connect(agent) as client:
        for frame in frames:
            await client.ws.send_str(frame)
        replies = [await client.ws.receive_json(timeout=10) for _ in frames]
        alive = await client.call("hello")
    assert [r["error"]["code"] for r in replies] == ["BAD_JSON"] * len(frames)
    assert "result" in alive


async def test_idle_and_half_sent_connections_are_closed_after_the_handshake_timeout(fixtures: Fixtures) -> None:
    async with running_agent(fixtures, handshake_timeout=1.0) as agent:
        port = agent.config.port
        idle = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        started = time.monotonic()
        for reader, _ in (idle, half):
            assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the agent
        assert time.monotonic() - started < 3
        async with connect(agent) as client:  # an open page is not subject to the timeout
            await asyncio.sleep(1.5)
            assert "result" in await client.call("hello")
        for _, writer in (idle, half):
            writer.close()


async def test_hundreds_of_idle_sockets_never_starve_a_real_page(fixtures: Fixtures) -> None:
    async with running_agent(fixtures, max_pending_connections=32, handshake_timeout=30.0) as agent:
        idle = [await asyncio.open_connection("127.0.0.1", agent.config.port) for _ in range(300)]
        try:
            async with connect(agent) as client:
                assert "result" in await client.call("listCertificates")
            closed = 0
            for reader, _ in idle:  # the agent closed all but the newest 32 waiting connections
                with contextlib.suppress(TimeoutError):
                    closed += await asyncio.wait_for(reader.read(), timeout=0.05) == b""
            assert closed >= 300 - 32
        finally:
            for _, writer in idle:
                writer.close()


async def test_an_origin_keeps_a_bounded_number_of_open_pages_and_the_newest_always_connects(
    fixtures: Fixtures,
) -> None:
    async with running_agent(fixtures, max_connections_per_origin=3) as agent, aiohttp.ClientSession() as session:
        pages = [await session.ws_connect(agent.url, origin=ALLOWED_ORIGIN) for _ in range(4)]
        closed = await pages[0].receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert pages[0].close_code == 1013
        await pages[3].send_json({"id": 1, "method": "hello"})
        assert "result" in await pages[3].receive_json(timeout=5)
        for page in pages:
            await page.close()


def test_out_of_descriptors_the_agent_logs_sparingly_and_serves_the_page_once_sockets_time_out(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'port = {port}\nallowed_origins = ["{ALLOWED_ORIGIN}"]\nmodules = ["{fixtures.module}"]\n'
        'listen_hosts = ["127.0.0.1"]\nhandshake_timeout = 2\nmax_pending_connections = 1000\n',
        encoding="utf-8",
    )

    def limit_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    daemon = Daemon(
        [sys.executable, "-m", "cert_agent", "serve", "--config", str(config)],
        tmp_path / "agent.log",
        env=fixtures.env.environ(),
        preexec_fn=limit_descriptors,
    )
    sockets: list[socket.socket] = []
    try:
        assert "listening on" in daemon.line()
        for _ in range(300):
            sockets.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1)

        async def page() -> dict[str, object]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"ws://127.0.0.1:{port}/ws", origin=ALLOWED_ORIGIN) as ws,
            ):
                await ws.send_json({"id": 1, "method": "hello"})
                reply: dict[str, object] = await ws.receive_json(timeout=20)
                return reply

        assert "result" in asyncio.run(asyncio.wait_for(page(), timeout=30))
    finally:
        for sock in sockets:
            sock.close()
        stderr = daemon.stop()
    accept_errors = [line for line in stderr.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(accept_errors) <= 5, stderr[-2000:]
    assert NONCE not in stderr
