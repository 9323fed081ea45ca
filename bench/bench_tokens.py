"""Many tokens at once, in one run: the memory of the whole agent (the daemon and every worker,
as PSS, so shared pages count once) with 1, 5 and 20 SoftHSM2 tokens present and each used
once; the first `authenticate` on a token against a warm one, for the tokens present at the
start and for tokens plugged in while the agent runs; and `listCertificates` with 20 tokens,
called again and again.

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
from softhsm_fixtures.taxpayers import CertSpec, TokenSpec
from tests.harness.agent import ALLOWED_ORIGIN, Client, free_port
from tests.harness.processes import tree_pss_kib

NONCE = base64.b64encode(os.urandom(32)).decode()
PLUGGED = 5  # tokens pulled out and plugged in again while the agent runs (fewer when fewer exist)


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
                # Tokens plugged in while the agent runs: the first authenticate after the
                # tokenInserted event, against the warm one after it.
                plugged_first: list[float] = []
                plugged_warm: list[float] = []
                for token in tokens[:PLUGGED]:
                    fixtures.env.pull_out(token["serial"])
                    await client.event("tokenRemoved")
                    fixtures.env.plug_in(token["serial"])
                    await client.event("tokenInserted")
                    params = {"tokenId": token["tokenId"], "certId": token["certificates"][0]["certId"],
                              "pin": "112233", "challengeNonce": NONCE}  # fmt: skip
                    for samples in (plugged_first, plugged_warm):
                        started = time.perf_counter()
                        reply = await client.call("authenticate", **params)
                        samples.append(time.perf_counter() - started)
                        assert "result" in reply, reply
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    return {
        "pss_mb": pss / 1024,
        "first_ms": statistics.median(first) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "plugged_first_ms": statistics.median(plugged_first) * 1000,
        "plugged_warm_ms": statistics.median(plugged_warm) * 1000,
        "list_first_ms": statistics.median(listing[:5]) * 1000,
        "list_last_ms": statistics.median(listing[-5:]) * 1000,
    }


async def main() -> None:
    print("the whole agent (daemon + workers) with N SoftHSM2 tokens, each used once")
    header = f"{'tokens':>6}{'PSS':>10}{'first auth':>13}{'warm auth':>12}{'ratio':>8}"
    print(f"  {header}{'list (first 5 / last 5 of 20)':>34}{'plugged in: first / warm':>30}")
    for count, goal in ((1, 60), (5, 90), (20, 150)):
        r = await measure(count)
        print(
            f"  {count:>6}{r['pss_mb']:>7.0f} MB{r['first_ms']:>10.1f} ms{r['warm_ms']:>9.1f} ms"
            f"{r['first_ms'] / r['warm_ms']:>8.2f}{r['list_first_ms']:>16.0f} ms / {r['list_last_ms']:.0f} ms"
            f"{r['plugged_first_ms']:>12.1f} ms / {r['plugged_warm_ms']:.1f} ms"
            f" = {r['plugged_first_ms'] / r['plugged_warm_ms']:.2f}   (PSS goal <= {goal} MB)"
        )


if __name__ == "__main__":
    asyncio.run(main())
