"""The agent's own cost, beside a bare round trip measured in the same run (issue 23).

Against the demo's three SoftHSM2 media, one connection, each median of N calls:

- a bare aiohttp WebSocket JSON round trip (an echo server in its own Python process, the same
  client code): the baseline;
- ``hello`` and ``listCertificates`` (nothing changed), each in bare round trips (goals <= 2, <= 3);
- ``authenticate`` against PyKCS11 signing directly (PIN, sign, logout): the agent's own cost is
  agent - direct - bare round trip (goal <= 0.3 ms).

    python -m bench.bench_agent_cost [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_agent import ORIGIN, call, direct_round_trips, nonce, serve_agent, token_id
from softhsm_fixtures import build_fixtures
from softhsm_fixtures.taxpayers import DEMO_TOKENS
from tests.harness.agent import free_port

ECHO = """
import asyncio, sys
from aiohttp import web
async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for message in sock:
        data = message.json()
        await sock.send_json({"id": data["id"], "result": {}})
    return sock
app = web.Application()
app.router.add_get("/ws", ws)
async def serve():
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("listening", flush=True)  # once it listens
    await asyncio.Event().wait()
asyncio.run(serve())
"""


async def medians(url: str, calls: dict[str, dict[str, Any]], rounds: int) -> dict[str, float]:
    result = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=ORIGIN) as ws:
        for method, params in calls.items():
            times = []
            for i in range(rounds + 20):
                fresh = {**params, "challengeNonce": nonce()} if method == "authenticate" else params
                start = time.perf_counter()
                reply = await call(ws, i, method, **fresh)
                elapsed = time.perf_counter() - start
                assert "result" in reply, reply
                if i >= 20:
                    times.append(elapsed)
            result[method] = statistics.median(times)
    return result


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp) / "fixtures", tokens=DEMO_TOKENS)
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        echo_port = free_port()
        echo = subprocess.Popen([sys.executable, "-c", ECHO, str(echo_port)], stdout=subprocess.PIPE, text=True)
        agent, agent_port = serve_agent(fixtures, tmp)
        try:
            assert echo.stdout is not None and "listening" in echo.stdout.readline()
            await asyncio.sleep(2)
            bare = (await medians(f"ws://127.0.0.1:{echo_port}/ws", {"echo": {}}, rounds))["echo"]
            sign = {
                "tokenId": token_id(fixtures, "hairun-ec"),
                "certId": fixtures.cert("hairun-ec").cert_id,
                "pin": "112233",
            }
            calls: dict[str, dict[str, Any]] = {
                "hello": {"protocolVersions": [1]},
                "listCertificates": {},
                "authenticate": sign,
            }
            agent_times = await medians(f"ws://127.0.0.1:{agent_port}/ws", calls, rounds)
            direct = statistics.median(direct_round_trips(fixtures, rounds))
        finally:
            for process in (agent, echo):
                process.terminate()
                process.wait(timeout=20)
    own = agent_times["authenticate"] - direct - bare
    print(f"the agent's own cost, {rounds} calls each, one connection, three SoftHSM2 media")
    print(f"  bare aiohttp WebSocket JSON round trip: {bare * 1e3:.3f} ms (the baseline)")
    print(
        f"  hello: {agent_times['hello'] * 1e3:.3f} ms = {agent_times['hello'] / bare:.1f} bare round trips (goal <= 2)"
    )
    listing = agent_times["listCertificates"]
    print(f"  listCertificates, nothing changed: {listing * 1e3:.3f} ms = {listing / bare:.1f} bare (goal <= 3)")
    print(f"  authenticate: {agent_times['authenticate'] * 1e3:.3f} ms; PyKCS11 directly: {direct * 1e3:.3f} ms")
    print(
        f"  the agent's own cost per authenticate (agent - direct - bare): {own * 1e3:.3f} ms"
        f" = {own / bare:.1f} bare round trips (goal <= 0.3 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(parser.parse_args().rounds))
