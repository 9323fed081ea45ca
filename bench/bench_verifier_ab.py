"""Two versions of the verifier, logins alternated between them in one run: the CPU each
process spends per complete certificate login (challenge, token, person, SMS code, session).

As ``bench_agent_ab`` for the agent: on a shared or virtual machine the CPU a login costs drifts
between runs by more than a change moves it (6.1 ms one day, 12-14 ms the next on the same 2-core
VM), so the two versions are measured side by side: one login on A, then one on B, by one client,
each on its own SQLite file (``--postgres``: its own database of one PostgreSQL server, whose
backends serving it are measured too); the load generator signs on SoftHSM2 as in
``bench_verifier_scale``. A CPU time is the process's (all its threads) from /proc.

    git worktree add /tmp/before <commit>
    python -m bench.bench_verifier_ab /tmp/before [.] [--logins N] [--postgres]
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import psycopg

from bench.ab import two_trees_and_flags
from bench.bench_verifier_scale import FastSigner, cpu_seconds, one_login, started
from softhsm_fixtures import build_fixtures
from tests.harness.postgres import postgres_server
from tests.harness.verifier import ORIGIN, VerifierProcess


@contextmanager
def code_of(tree: Path) -> Iterator[None]:
    """Processes started inside run ``tree``'s code (its ``cert_agent``): ``python -m`` puts the
    working directory first on the path, before PYTHONPATH, so both are set to the tree."""
    before, here = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(tree.resolve())
    os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(here)
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


async def main(trees: tuple[Path, Path], logins: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        fixtures = build_fixtures(root / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        signer = FastSigner(fixtures)
        server = stack.enter_context(postgres_server(root / "postgres")) if postgres else None
        instances: list[VerifierProcess] = []
        try:
            for name, tree in zip("AB", trees, strict=True):
                with code_of(tree):
                    instance = started(fixtures, root / name, server.new_database() if server else None)
                instances.append(instance)
                assert instance.process is not None
                assert Path(f"/proc/{instance.process.pid}/cwd").resolve() == tree.resolve()  # runs tree's code
            used = {instance.port: 0.0 for instance in instances}
            database_used = {instance.port: 0.0 for instance in instances}
            backends: dict[int, list[int]] = {}
            async with aiohttp.ClientSession(headers={"Origin": ORIGIN}) as session:
                for n in range(logins + 40):  # the first 40 warm up
                    for instance in instances:
                        if n == 40 and instance.database:  # the pool's connections, opened by now
                            backends[instance.port] = backends_of(instance.database)
                        pid = instance.process.pid if instance.process else 0
                        serving = backends.get(instance.port, [])  # none on SQLite, or before they are known
                        before, database_before = cpu_seconds([pid]), cpu_seconds(serving)
                        await one_login(session, [instance], signer, n, asyncio.Lock())
                        if n >= 40:
                            used[instance.port] += cpu_seconds([pid]) - before
                            database_used[instance.port] += cpu_seconds(serving) - database_before
        finally:
            for instance in instances:
                instance.stop()
    a, b = (used[instance.port] * 1000 / logins for instance in instances)
    where = "PostgreSQL (a database each)" if postgres else "SQLite"
    print(f"the verifier on {where}, A = {trees[0]}, B = {trees[1]}: {logins} logins each, alternated")
    print(f"  CPU per complete certificate login: A {a:.2f} ms   B {b:.2f} ms   B / A {b / a:.2f}")
    if postgres:
        da, db = (database_used[instance.port] * 1000 / logins for instance in instances)
        print(f"  its database backends' CPU per login: A {da:.2f} ms   B {db:.2f} ms   B / A {db / da:.2f}")


def backends_of(url: str) -> list[int]:
    """The server processes serving the database of ``url`` (the verifier's pooled connections)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


if __name__ == "__main__":
    flags = [("postgres", "each version on a PostgreSQL database of its own (default: a SQLite file each)")]
    trees, logins, given = two_trees_and_flags(__doc__, "logins", 400, flags)
    asyncio.run(main(trees, logins, "postgres" in given))
