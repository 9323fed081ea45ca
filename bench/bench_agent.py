"""The agent daemon against PyKCS11 directly, on SoftHSM2 (EC P-256), in one run.

1. ``authenticate`` round trip over the WebSocket (the daemon runs as ``cert-agent serve`` in
   its own process) against the same PIN + sign + logout through PyKCS11 called directly:
   ratio of the medians (goal <= 1.10).
2. 100 concurrent connections x 10 authentications each, spread over the demo tokens: errors
   (goal: none) and throughput, against the serial direct rate on one token.
3. Idle memory of the daemon: resident set of the main process, and of it with its workers
   (goal <= 45 MB for the daemon).

    python bench/bench_agent.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import PyKCS11

from softhsm_fixtures import Fixtures, build_fixtures
from tests.harness.agent import free_port
from tests.harness.processes import tree_pss_kib

ORIGIN = "https://etax.example.com"
CONCURRENT_CERTS = ["hairun-ec", "xinda-ec", "hengxin-ec", "shuangzheng-ec", "chuxin-ec"]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def serve_agent(fixtures: Fixtures, runtime: str, tree: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    """``cert-agent serve`` on ``fixtures``' module for the benchmark's origin, its runtime folder
    ``runtime`` (private), the code of ``tree`` (default: this checkout); its port once it listens."""
    env = {**fixtures.env.environ(), "XDG_RUNTIME_DIR": runtime}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    port = free_port()
    command = [sys.executable, "-m", "cert_agent", "serve", "--port", str(port), "--allow-origin", ORIGIN]
    agent = subprocess.Popen(
        [*command, "--module", fixtures.module],
        env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert agent.stdout is not None and "listening" in agent.stdout.readline()
    return agent, port


def nonce() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def token_id(fixtures: Fixtures, cert_name: str) -> str:
    return f"{fixtures.module}#{fixtures.token_of(cert_name).serial}"


async def call(ws: aiohttp.ClientWebSocketResponse, request_id: int, method: str, **params: Any) -> dict[str, Any]:
    await ws.send_json({"id": request_id, "method": method, "params": params})
    while True:
        message = await ws.receive_json()
        if message.get("id") == request_id:
            return dict(message)


async def agent_round_trips(url: str, fixtures: Fixtures, rounds: int) -> list[float]:
    times = []
    params = {"tokenId": token_id(fixtures, "hairun-ec"), "certId": fixtures.cert("hairun-ec").cert_id, "pin": "112233"}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=ORIGIN) as ws:
        for i in range(rounds + 20):
            start = time.perf_counter()
            reply = await call(ws, i, "authenticate", challengeNonce=nonce(), **params)
            elapsed = time.perf_counter() - start
            assert "result" in reply, reply
            if i >= 20:  # warm-up
                times.append(elapsed)
    return times


def direct_round_trips(fixtures: Fixtures, rounds: int) -> list[float]:
    lib = PyKCS11.PyKCS11Lib().load(fixtures.module)
    serial = fixtures.token_of("hairun-ec").serial
    slot = next(s for s in lib.getSlotList(tokenPresent=True) if lib.getTokenInfo(s).serialNumber.strip() == serial)
    cert_id = bytes.fromhex(fixtures.cert("hairun-ec").cert_id)
    mechanism = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None)
    times = []
    for i in range(rounds + 20):
        start = time.perf_counter()
        data = hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(nonce().encode()).digest()
        session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
        session.login("112233")
        key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, cert_id)])[0]
        session.sign(key, hashlib.sha256(data).digest(), mechanism)
        session.logout()
        session.closeSession()
        if i >= 20:
            times.append(time.perf_counter() - start)
    lib.unload()
    return times


async def concurrent_load(url: str, fixtures: Fixtures, connections: int, per_connection: int) -> tuple[int, float]:
    errors = 0
    codes: Counter[str] = Counter()

    async def tab(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        cert_name = CONCURRENT_CERTS[index % len(CONCURRENT_CERTS)]
        params = {
            "tokenId": token_id(fixtures, cert_name),
            "certId": fixtures.cert(cert_name).cert_id,
            "pin": fixtures.token_of(cert_name).pin,
        }
        async with session.ws_connect(url, origin=ORIGIN) as ws:
            for i in range(per_connection):
                reply = await call(ws, i, "authenticate", challengeNonce=nonce(), **params)
                if "result" not in reply:
                    errors += 1
                    codes[f"{reply['error']['code']} {reply['error'].get('detail', '')}"] += 1

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(tab(i, session) for i in range(connections)))
    if codes:
        print(f"  error codes: {dict(codes)}")
    return errors, time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp) / "fixtures")
        env = fixtures.env.environ()
        env["XDG_RUNTIME_DIR"] = tmp  # its own per-user lock: a real agent may be running
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        port = free_port()
        # The load test opens 100 pages of one site at once, more than the 32 a desktop keeps.
        config = Path(tmp) / "config.toml"
        config.write_text("max_connections_per_origin = 128\n", encoding="utf-8")
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cert_agent",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--allow-origin",
                ORIGIN,
                "--module",
                fixtures.module,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
            url = f"ws://127.0.0.1:{port}/ws"
            await asyncio.sleep(3)  # idle: the first scan is done, no page has connected
            idle_main = rss_kib(daemon.pid)
            idle_total = tree_pss_kib(daemon.pid)

            agent_times = await agent_round_trips(url, fixtures, args.rounds)
            direct_times = direct_round_trips(fixtures, args.rounds)
            serial_rate = 1 / statistics.median(direct_times)
            errors, elapsed = await concurrent_load(url, fixtures, 100, 10)
            busy_total = tree_pss_kib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)

    a_med, d_med = statistics.median(agent_times), statistics.median(direct_times)
    print(f"authenticate, EC P-256 on SoftHSM2, {args.rounds} rounds each")
    print(f"  PyKCS11 direct (PIN + sign + logout)   : median {d_med * 1e3:.3f} ms")
    print(f"  agent over WebSocket (authenticate)    : median {a_med * 1e3:.3f} ms")
    print(f"  ratio agent/direct at the median       : {a_med / d_med:.3f} (goal <= 1.10)")
    print(f"  added by the agent (WebSocket, JSON, worker process): {(a_med - d_med) * 1e3:.3f} ms")
    print(f"100 connections x 10 authentications over {len(CONCURRENT_CERTS)} tokens")
    print(
        f"  errors: {errors}; {1000 / elapsed:.0f} authentications/s; serial direct on one token: {serial_rate:.0f}/s"
    )
    print(f"  throughput / serial direct rate: {(1000 / elapsed) / serial_rate:.2f}")
    print("memory")
    print(f"  idle daemon, main process (RSS): {idle_main / 1024:.1f} MB (goal <= 45 MB)")
    print(f"  idle, the whole agent (PSS; a worker per module): {idle_total / 1024:.1f} MB")
    print(f"  after the load (PSS): {busy_total / 1024:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
