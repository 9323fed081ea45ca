"""Two versions of the agent, the same calls alternated between them in one run.

On a shared or virtual machine the time of a call drifts by more between two runs than a change
moves it (a 2-core VM: ``hello`` from 0.13 to 0.9 ms between two days). Alternating call by call
between a daemon from tree A (say a ``git worktree`` of the commit before a change) and one from
tree B makes both see the same machine, so their difference is the change's.

Each daemon serves its own copy of the demo's media (three SoftHSM2 tokens); each round calls
``hello``, ``listCertificates`` and ``authenticate`` on A, then the same on B.

    git worktree add /tmp/before <commit>
    python -m bench.bench_agent_ab /tmp/before [.] [--rounds N]
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.ab import two_trees
from bench.bench_agent import ORIGIN, call, nonce, serve_agent, token_id
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.taxpayers import DEMO_TOKENS

METHODS = ("hello", "listCertificates", "authenticate")


def params(method: str, fixtures: Fixtures) -> dict[str, Any]:
    if method == "hello":
        return {"protocolVersions": [1]}
    if method == "listCertificates":
        return {}
    return {
        "tokenId": token_id(fixtures, "hairun-ec"),
        "certId": fixtures.cert("hairun-ec").cert_id,
        "pin": "112233",
        "challengeNonce": nonce(),
    }


async def main(trees: tuple[Path, Path], rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        agents = []
        for name, tree in zip("AB", trees, strict=True):
            runtime = tempfile.mkdtemp(dir=tmp)  # private (0700), as the agent wants its runtime folder
            fixtures = build_fixtures(Path(runtime) / "fixtures", tokens=DEMO_TOKENS)
            agent, port = serve_agent(fixtures, runtime, tree.resolve())
            agents.append((name, fixtures, agent, port))
        times: dict[tuple[str, str], list[float]] = {(name, m): [] for name, *_ in agents for m in METHODS}
        try:
            await asyncio.sleep(2)  # the first scans
            async with aiohttp.ClientSession() as session:
                sockets = [await session.ws_connect(f"ws://127.0.0.1:{port}/ws", origin=ORIGIN) for *_, port in agents]
                for i in range(rounds + 30):  # the first 30 warm up
                    for (name, fixtures, _, _), ws in zip(agents, sockets, strict=True):
                        for number, method in enumerate(METHODS):
                            start_time = time.perf_counter()
                            reply = await call(ws, i * 10 + number, method, **params(method, fixtures))
                            elapsed = time.perf_counter() - start_time
                            assert "result" in reply, reply
                            if i >= 30:
                                times[(name, method)].append(elapsed)
                for ws in sockets:
                    await ws.close()
        finally:
            for *_, agent, _ in agents:
                agent.terminate()
                agent.wait(timeout=20)
    print(f"the agent, A = {trees[0]}, B = {trees[1]}: {rounds} rounds, alternated call by call")
    for method in METHODS:
        a, b = statistics.median(times[("A", method)]), statistics.median(times[("B", method)])
        difference = f"B - A {(b - a) * 1e3:+.3f} ms   B / A {b / a:.2f}"
        print(f"  {method:17} A {a * 1e3:7.3f} ms   B {b * 1e3:7.3f} ms   {difference}")


if __name__ == "__main__":
    asyncio.run(main(*two_trees(__doc__, "rounds", 300)))
