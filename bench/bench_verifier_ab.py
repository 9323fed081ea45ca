"""Two versions of the verifier, logins alternated between them in one run: the CPU each
process spends per complete certificate login (challenge, token, person, SMS code, session).

As ``bench_agent_ab`` for the agent: on a shared or virtual machine the CPU a login costs drifts
between runs by more than a change moves it (6.1 ms one day, 12-14 ms the next on the same 2-core
VM), so the two versions are measured side by side: one login on A, then one on B, by one client,
each on its own SQLite file; the load generator signs on SoftHSM2 as in
``bench_verifier_scale``. A CPU time is the process's (all its threads) from /proc.

    git worktree add /tmp/before <commit>
    python -m bench.bench_verifier_ab /tmp/before [.] [--logins N]
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.ab import two_trees
from bench.bench_verifier_scale import FastSigner, cpu_seconds, one_login, started
from softhsm_fixtures import build_fixtures
from tests.harness.verifier import ORIGIN, VerifierProcess


@contextmanager
def code_of(tree: Path) -> Iterator[None]:
    """Processes started inside run ``tree``'s code (its ``cert_agent``)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree.resolve())
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


async def main(trees: tuple[Path, Path], logins: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixtures = build_fixtures(root / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        signer = FastSigner(fixtures)
        instances: list[VerifierProcess] = []
        try:
            for name, tree in zip("AB", trees, strict=True):
                with code_of(tree):
                    instances.append(started(fixtures, root / name, None))
            used = {instance.port: 0.0 for instance in instances}
            async with aiohttp.ClientSession(headers={"Origin": ORIGIN}) as session:
                for n in range(logins + 40):  # the first 40 warm up
                    for instance in instances:
                        pid = instance.process.pid if instance.process else 0
                        before = cpu_seconds([pid])
                        await one_login(session, [instance], signer, n, asyncio.Lock())
                        if n >= 40:
                            used[instance.port] += cpu_seconds([pid]) - before
        finally:
            for instance in instances:
                instance.stop()
    a, b = (used[instance.port] * 1000 / logins for instance in instances)
    print(f"the verifier on SQLite, A = {trees[0]}, B = {trees[1]}: {logins} logins each, alternated")
    print(f"  CPU per complete certificate login: A {a:.2f} ms   B {b:.2f} ms   B / A {b / a:.2f}")


if __name__ == "__main__":
    asyncio.run(main(*two_trees(__doc__, "logins", 400)))
