"""Many tokens at once, in one run: the memory of the whole agent (the daemon and every worker,
as PSS, so shared pages count once) with 1, 5 and 20 SoftHSM2 tokens present and each used
once; the first `authenticate` on a token against a warm one; and `listCertificates` with 20
tokens, called again and again.

    python -m bench.bench_tokens

Goals (issue 12): PSS <= 60 / 90 / 150 MB; first/warm authenticate <= 1.2; listCertificates not
growing with calls.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from softhsm_fixtures import build_fixtures
from softhsm_fixtures.catalog import CertSpec, TokenSpec
from tests.harness.agent import ALLOWED_ORIGIN, Client, free_port
from tests.harness.processes import tree_pss_kib

NONCE = base64.b64encode(os.urandom(32)).decode()


def specs(count: int) -> tuple[TokenSpec, ...]:
    return tuple(
        TokenSpec(f"bench-{i}", f"税务UKey 基准{i:02d}", "112233", (CertSpec(f"bench-{i}-ec", "hairun"),))
        for i in range(count)
    )


async def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = build_fixtures(Path(tmp) / "fixtures", tokens=specs(count))
        env = fixtures.env.environ() | {"XDG_RUNTIME_DIR": tmp}
        port = free_port()
        command = [sys.executable, "-m", "cert_agent", "serve", "--port", str(port),
                   "--allow-origin", ALLOWED_ORIGIN, "--module", fixtures.module]  # fmt: skip
        daemon = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
            await asyncio.sleep(2)
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"ws://127.0.0.1:{port}/ws", origin=ALLOWED_ORIGIN) as ws,
            ):
                client = Client(ws)
                tokens = (await client.call("listCertificates"))["result"]["tokens"]
                first, warm = [], []
                for token in tokens:
                    params = {"tokenId": token["tokenId"], "certId": token["certificates"][0]["certId"],
                              "pin": "112233", "challengeNonce": NONCE}  # fmt: skip
                    started = time.perf_counter()
                    reply = await client.call("authenticate", **params)
                    first.append(time.perf_counter() - started)
                    assert "result" in reply, reply
                    started = time.perf_counter()
                    await client.call("authenticate", **params)
                    warm.append(time.perf_counter() - started)
                listing = []
                for _ in range(20):
                    started = time.perf_counter()
                    await client.call("listCertificates")
                    listing.append(time.perf_counter() - started)
                pss = tree_pss_kib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    return {
        "pss_mb": pss / 1024,
        "first_ms": statistics.median(first) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "list_first_ms": statistics.median(listing[:5]) * 1000,
        "list_last_ms": statistics.median(listing[-5:]) * 1000,
    }


async def main() -> None:
    print("the whole agent (daemon + workers) with N SoftHSM2 tokens, each used once")
    header = f"{'tokens':>6}{'PSS':>10}{'first auth':>13}{'warm auth':>12}{'ratio':>8}"
    print(f"  {header}{'list (first 5 / last 5 of 20)':>34}")
    for count, goal in ((1, 60), (5, 90), (20, 150)):
        r = await measure(count)
        print(
            f"  {count:>6}{r['pss_mb']:>7.0f} MB{r['first_ms']:>10.0f} ms{r['warm_ms']:>9.0f} ms"
            f"{r['first_ms'] / r['warm_ms']:>8.2f}{r['list_first_ms']:>16.0f} ms / {r['list_last_ms']:.0f} ms"
            f"   (PSS goal <= {goal} MB)"
        )


if __name__ == "__main__":
    asyncio.run(main())
