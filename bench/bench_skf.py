"""SM2 media behind the SKF interface, on the project's software SKF device, in one run.

1. The SKF driver's SM2 signature (connect, the device's serial, open the application,
   VerifyPIN, open the container, DigestInit with its public key (read when the token appeared)
   and the default ID, Digest, ECCSignData, close) against the same calls made on the same
   library directly through ctypes: ratio of the medians (goal <= 1.05).
2. ``authenticate`` on the SKF medium through a real ``cert-agent serve``, and what the agent adds
   to the direct signature, beside a bare aiohttp WebSocket round trip measured in the same run.
3. The whole agent (daemon and worker, PSS) with 20 SKF tokens (goal <= 80 MB).

    python -m bench.bench_skf [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from cert_agent.agent.client import AgentClient
from cert_agent.common.algorithms import SM2_DEFAULT_ID, SignatureAlgorithm
from cert_agent.common.webeid import signed_data
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.skf import SkfDriver
from cert_agent.drivers.skf.structs import ECCSIGNATUREBLOB
from softhsm_fixtures.skf_build import SkfFixtures, build_skf_fixtures
from softhsm_fixtures.taxpayers import SkfContainerSpec, SkfMediumSpec
from tests.harness.agent import free_port
from tests.harness.processes import tree_pss_kib

ORIGIN = "https://etax.example.com"
PIN = "Bm2026sm2"
NONCE = "b" * 44


def media(count: int) -> tuple[SkfMediumSpec, ...]:
    return tuple(
        SkfMediumSpec(f"bench-{i}", f"税务UKey 基准{i:02d} SM2", f"SKF-BENCH-{i:04d}", PIN,
                      (SkfContainerSpec("SM2CONTAINER0002", f"bench-{i}-sm2", "hairun"),), max_tries=10)
        for i in range(count)
    )  # fmt: skip


def direct_signatures(library: str, device: str, rounds: int) -> list[float]:
    """The SKF calls the driver makes for a signature, straight through ctypes (no checks, no
    objects): the device's info (its serial), the application, VerifyPIN, the container, the
    digest with the public key read once beforehand (as the driver keeps it), the signature."""
    lib = ctypes.CDLL(library)
    u32, handle = ctypes.c_uint32, ctypes.c_void_p
    data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
    key = _public_key(lib, device)
    times = []
    for i in range(rounds + 20):
        start = time.perf_counter()
        dev, app, con, digest_handle = handle(), handle(), handle(), handle()
        assert lib.SKF_ConnectDev(device.encode(), ctypes.byref(dev)) == 0
        info = ctypes.create_string_buffer(294)
        assert lib.SKF_GetDevInfo(dev, info) == 0
        assert lib.SKF_OpenApplication(dev, b"SM2", ctypes.byref(app)) == 0
        retries = u32()
        assert lib.SKF_VerifyPIN(app, 1, PIN.encode(), ctypes.byref(retries)) == 0
        assert lib.SKF_OpenContainer(app, b"SM2CONTAINER0002", ctypes.byref(con)) == 0
        assert lib.SKF_DigestInit(dev, 1, key, SM2_DEFAULT_ID, 16, ctypes.byref(digest_handle)) == 0
        digest, digest_size = ctypes.create_string_buffer(32), u32(32)
        assert lib.SKF_Digest(digest_handle, data, len(data), digest, ctypes.byref(digest_size)) == 0
        lib.SKF_CloseHandle(digest_handle)
        blob = ECCSIGNATUREBLOB()
        assert lib.SKF_ECCSignData(con, digest, 32, ctypes.byref(blob)) == 0
        lib.SKF_CloseContainer(con)
        lib.SKF_ClearSecureState(app)
        lib.SKF_CloseApplication(app)
        lib.SKF_DisConnectDev(dev)
        if i >= 20:
            times.append(time.perf_counter() - start)
    return times


def _public_key(lib: ctypes.CDLL, device: str) -> ctypes.Array[ctypes.c_char]:
    dev, app, con = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    assert lib.SKF_ConnectDev(device.encode(), ctypes.byref(dev)) == 0
    assert lib.SKF_OpenApplication(dev, b"SM2", ctypes.byref(app)) == 0
    assert lib.SKF_OpenContainer(app, b"SM2CONTAINER0002", ctypes.byref(con)) == 0
    key, size = ctypes.create_string_buffer(132), ctypes.c_uint32(132)
    assert lib.SKF_ExportPublicKey(con, ctypes.c_long(1), key, ctypes.byref(size)) == 0
    lib.SKF_CloseContainer(con)
    lib.SKF_CloseApplication(app)
    lib.SKF_DisConnectDev(dev)
    return key


def driver_signatures(skf: SkfFixtures, rounds: int) -> list[float]:
    driver = SkfDriver([skf.library])
    token = driver.find_token(token_id=skf.token_id("bench-0"))
    driver.certificates(token)  # as the agent's worker does when a token appears
    cert_id = bytes.fromhex(skf.cert("bench-0-sm2").cert_id)
    data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
    times = []
    for i in range(rounds + 20):
        start = time.perf_counter()
        with Pin(PIN) as pin:
            driver.sign(token, cert_id, pin, data, SignatureAlgorithm.SM2SM3)
        if i >= 20:
            times.append(time.perf_counter() - start)
    driver.close()
    return times


async def agent_round_trips(url: str, skf: SkfFixtures, rounds: int) -> list[float]:
    params = {"tokenId": skf.token_id("bench-0"), "certId": skf.cert("bench-0-sm2").cert_id, "pin": PIN}
    times = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=ORIGIN) as ws:
        client = AgentClient(ws)
        for i in range(rounds + 20):
            start = time.perf_counter()
            reply = await client.call("authenticate", challengeNonce=NONCE, **params)
            assert "result" in reply, reply
            if i >= 20:
                times.append(time.perf_counter() - start)
    return times


async def bare_round_trips(rounds: int) -> list[float]:
    """A JSON request and reply over an aiohttp WebSocket that does nothing else."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    times = []
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            client = AgentClient(ws)
            for i in range(rounds + 20):
                start = time.perf_counter()
                await client.call("authenticate", challengeNonce=NONCE)
                if i >= 20:
                    times.append(time.perf_counter() - start)
    finally:
        await runner.cleanup()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        skf = build_skf_fixtures(Path(tmp) / "skf", media=media(20))
        os.environ.update(skf.environ())
        direct = direct_signatures(skf.library, skf.medium("bench-0").device, args.rounds)
        ours = driver_signatures(skf, args.rounds)
        direct_again = direct_signatures(skf.library, skf.medium("bench-0").device, args.rounds)
        env = dict(os.environ) | {"XDG_RUNTIME_DIR": tmp}
        port = free_port()
        command = [sys.executable, "-m", "cert_agent", "serve", "--port", str(port),
                   "--allow-origin", ORIGIN, "--module", skf.library]  # fmt: skip
        daemon = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
            await asyncio.sleep(3)
            idle_total = tree_pss_kib(daemon.pid)
            agent = await agent_round_trips(f"ws://127.0.0.1:{port}/ws", skf, args.rounds)
            bare = await bare_round_trips(args.rounds)
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)
    d_med = statistics.median(direct + direct_again)
    o_med, a_med, b_med = statistics.median(ours), statistics.median(agent), statistics.median(bare)
    print(f"SM2 signature on the software SKF device, {args.rounds} rounds each")
    print(f"  the library through ctypes directly: median {d_med * 1e3:.3f} ms")
    print(f"  the SKF driver                     : median {o_med * 1e3:.3f} ms")
    print(f"  ratio driver/direct at the median  : {o_med / d_med:.3f} (goal <= 1.05)")
    print("authenticate through cert-agent serve on the SKF medium")
    print(f"  agent over WebSocket: median {a_med * 1e3:.3f} ms; added to the direct signature: "
          f"{(a_med - d_med) * 1e3:.3f} ms")  # fmt: skip
    print(f"  a bare aiohttp WebSocket round trip, same run: median {b_med * 1e3:.3f} ms")
    print(f"  the agent's own cost beyond that round trip: {(a_med - d_med - b_med) * 1e3:.3f} ms")
    print(f"memory: the whole agent (PSS) with 20 SKF tokens: {idle_total / 1024:.1f} MB (goal <= 80 MB)")


if __name__ == "__main__":
    asyncio.run(main())
