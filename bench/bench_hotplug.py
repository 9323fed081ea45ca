"""Card insert and removal to the page's event, through pcscd, vsmartcard's virtual reader and
the agent's PC/SC watcher (goal: <= 300 ms at the median), in one run.

    python -m bench.bench_hotplug [--cycles N]

The time runs from the virtual card's connection to (or disconnection from) vpcd to the
`cardInserted` / `cardRemoved` event arriving on a page's WebSocket. It includes pcscd's own
polling of the reader, which the agent cannot shorten.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from softhsm_fixtures import build_fixtures
from tests.harness.agent import connect, running_agent
from tests.harness.vcard import Pcscd, VirtualCard


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=20)
    cycles = parser.parse_args().cycles
    pcscd = Pcscd()
    pcscd.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fixtures = build_fixtures(Path(tmp) / "fixtures")
            os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
            inserts, removals = [], []
            async with running_agent(fixtures, watch_readers=True) as agent, connect(agent) as client:
                await asyncio.sleep(1)
                for _ in range(cycles):
                    card = VirtualCard()
                    started = time.monotonic()
                    card.insert()
                    await client.event("cardInserted", timeout=5)
                    inserts.append(time.monotonic() - started)
                    await asyncio.sleep(0.3)
                    started = time.monotonic()
                    card.remove()
                    await client.event("cardRemoved", timeout=5)
                    removals.append(time.monotonic() - started)
                    await asyncio.sleep(0.3)
    finally:
        pcscd.stop()

    def line(name: str, values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        median = statistics.median(values)
        return f"  {name}: median {median * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"

    print(f"PC/SC hot-plug through pcscd and vpcd to the page's event, {cycles} cycles (goal: median <= 300 ms)")
    print(line("insert -> cardInserted", inserts))
    print(line("remove -> cardRemoved ", removals))


if __name__ == "__main__":
    asyncio.run(main())
