"""The verifier as a bureau would run it, in one run:

1. server CPU per complete certificate login (challenge, token check, person, SMS code,
   verify, session), measured as the CPU time of the verifier process (and of the PostgreSQL
   server's processes) over the logins, so the token's signing, done by the load generator,
   is not counted: on SQLite and on PostgreSQL;
2. logins per second with one and with two `cert-verifier serve` processes on one PostgreSQL
   database, the load generator (this process, 16 clients) on the same machine: the scaling
   ratio (goal >= 1.6 on a 2-core machine);
3. the baseline, in the same run: a bare aiohttp server in its own process answering the same
   four JSON POSTs of a login (its SMS step appends the code to an outbox, as the verifier's
   does), with nothing behind them. What the verifier's CPU exceeds it by is its own.

    python -m bench.bench_verifier_scale [--logins N]

The load generator signs each token on SoftHSM2 with one logged-in session (the signing
costs it ~0.3 ms, not the verifier). SMS codes are read from each instance's outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import PyKCS11
from cryptography.hazmat.primitives.serialization import Encoding

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import auth_token, signed_data
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.seed import verifier_records
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.agent import free_port
from tests.harness.postgres import PostgresServer, postgres_server
from tests.harness.processes import children
from tests.harness.verifier import ORIGIN, VerifierProcess

BARE = """
import asyncio, json, secrets, sys
from pathlib import Path
from aiohttp import web
outbox = Path(sys.argv[2]) / "outbox.jsonl"
async def challenge(request):
    await request.json()
    return web.json_response({"nonce": secrets.token_urlsafe(32), "expiresAt": "2026-12-02T00:00:00+00:00"})
async def certificate(request):
    await request.json()
    return web.json_response({"attemptId": secrets.token_urlsafe(24), "persons": []})
async def sms(request):
    await request.json()
    with outbox.open("a") as out:
        out.write(json.dumps({"code": "123456"}) + "\\n")
    return web.json_response({"sent": True})
async def verify(request):
    await request.json()
    return web.json_response({"sessionId": secrets.token_urlsafe(32)})
app = web.Application()
app.router.add_post("/api/challenge", challenge)
app.router.add_post("/api/login/certificate", certificate)
app.router.add_post("/api/login/sms", sms)
app.router.add_post("/api/login/verify", verify)
async def serve():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("listening", flush=True)  # once it listens: the first login must not find it closed
    await asyncio.Event().wait()
asyncio.run(serve())
"""
CLIENTS = 16
STAFF = 16  # 办税员 of the fixture taxpayer the logins choose from in turn, as many people log in at a peak
NO_LIMITS = (
    "sms_resend_interval = 0\nsms_per_attempt = 1000000000\nsms_per_person_per_hour = 1000000000\n"
    "sms_per_phone_per_day = 1000000000\n"
)
TICKS = os.sysconf("SC_CLK_TCK")


class FastSigner:
    """One PKCS#11 session, logged in once: each token costs one C_Sign."""

    def __init__(self, fixtures: Fixtures) -> None:
        self.lib = PyKCS11.PyKCS11Lib()
        self.lib.load(fixtures.module)
        label = fixtures.token("ukey").label
        slot = next(
            s for s in self.lib.getSlotList(tokenPresent=True) if self.lib.getTokenInfo(s).label.strip() == label
        )
        self.session = self.lib.openSession(slot)
        self.session.login(fixtures.token("ukey").pin)
        cert_id = bytes.fromhex(fixtures.cert("hairun-ec").cert_id)
        self.key = self.session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, cert_id)])[
            0
        ]
        self.der_b64 = base64.b64encode(fixtures.certificate("hairun-ec").public_bytes(Encoding.DER)).decode()

    def token_for(self, nonce: str) -> dict[str, Any]:
        import hashlib

        algorithm = SignatureAlgorithm.ES256
        digest = hashlib.sha256(signed_data(ORIGIN, nonce, algorithm)).digest()
        signature = bytes(self.session.sign(self.key, digest, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA)))
        return auth_token(self.der_b64, algorithm, signature)


class BareServer:
    """The baseline: ``BARE`` in a process of its own, used by ``one_login`` as a verifier is."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-c", BARE, str(self.port), str(directory)]
        self.process: subprocess.Popen[str] | None = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and "listening" in self.process.stdout.readline()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its children (backends, writer, WAL writer ...)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    return [postmaster, *children(postmaster)]


def last_code(outbox: Path) -> str:
    """The code in the outbox's last line, read from the file's end (the outbox grows by a line
    per login: reading it whole would make the load generator's cost grow with the run)."""
    with outbox.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
        return str(json.loads(file.read().splitlines()[-1])["code"])


Server = VerifierProcess | BareServer


async def one_login(
    session: aiohttp.ClientSession, instances: Sequence[Server], signer: FastSigner, n: int, sms: asyncio.Lock
) -> None:
    """The ``n``-th whole login: its challenge and SMS code at one instance, its token and code
    checked at the next (a load balancer's spread). ``sms`` is held from the SMS request to reading
    the outbox's last line (which must be this login's code)."""
    first, second = instances[n % len(instances)], instances[(n + 1) % len(instances)]
    async with session.post(first.url + "/api/challenge", json={}) as r:
        nonce = (await r.json())["nonce"]
    body = {"kind": "enterprise", "authToken": signer.token_for(nonce), "nonce": nonce}
    async with session.post(second.url + "/api/login/certificate", json=body) as r:
        attempt = (await r.json())["attemptId"]
    async with sms:
        async with session.post(
            first.url + "/api/login/sms", json={"attemptId": attempt, "personId": f"p-bench-{n % STAFF}"}
        ) as r:
            assert r.status == 200, await r.text()
        code = last_code(first.directory / "outbox.jsonl")
    async with session.post(second.url + "/api/login/verify", json={"attemptId": attempt, "code": code}) as r:
        assert r.status == 200, await r.text()


async def run_logins(instances: Sequence[Server], signer: FastSigner, count: int, clients: int = CLIENTS) -> float:
    """``count`` whole logins by ``clients`` clients, spread over ``instances``; logins per second."""
    locks = {instance.port: asyncio.Lock() for instance in instances}
    done = 0

    async def client() -> None:
        nonlocal done
        async with aiohttp.ClientSession(headers={"Origin": ORIGIN}) as session:
            while done < count:
                done += 1
                await one_login(session, instances, signer, done, locks[instances[done % len(instances)].port])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - start)


async def measure(
    instances: Sequence[Server], signer: FastSigner, count: int, server: PostgresServer | None
) -> tuple[float, float, float, float]:
    """(logins/s, verifier CPU ms per login, database CPU ms per login, load generator CPU ms
    per login)."""
    await run_logins(instances, signer, 40)  # warm: imports, caches, pool connections
    pids = [instance.process.pid for instance in instances if instance.process]
    database_pids = postgres_pids(server) if server else []  # after the warm-up: every pooled backend
    verifier_before, database_before, generator_before = cpu_seconds(pids), cpu_seconds(database_pids), _own_cpu()
    rate = await run_logins(instances, signer, count)
    verifier_ms = (cpu_seconds(pids) - verifier_before) * 1000 / count
    database_ms = (cpu_seconds(database_pids) - database_before) * 1000 / count
    return rate, verifier_ms, database_ms, (_own_cpu() - generator_before) * 1000 / count


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def started(fixtures: Fixtures, directory: Path, database: str | None) -> VerifierProcess:
    instance = VerifierProcess(fixtures, directory, database=database, origin=ORIGIN, settings=NO_LIMITS)
    staff = directory / "staff.json"
    hairun = TAXPAYERS["hairun"].taxpayer_id
    records = verifier_records()
    records["persons"] += [
        {"personId": f"p-bench-{i}", "name": f"办税员{i}", "idNumber": f"3702021990{i:08d}", "phone": f"139{i:08d}"}
        for i in range(STAFF)
    ]
    records["roles"] += [{"taxpayerId": hairun, "personId": f"p-bench-{i}", "role": "办税员"} for i in range(STAFF)]
    staff.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    target = database or str(directory / "v.db")
    command = [sys.executable, "-m", "cert_agent.verifier", "import", "--db", target, str(staff)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    instance.start()
    return instance


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=600)
    count = parser.parse_args().logins
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixtures = build_fixtures(root / "fixtures")
        os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
        signer = FastSigner(fixtures)
        results: dict[str, tuple[float, float, float, float]] = {}
        bare = BareServer(root / "bare")
        try:
            results["bare aiohttp (baseline)"] = await measure([bare], signer, count, None)
        finally:
            bare.stop()
        sqlite = started(fixtures, root / "sqlite", None)
        try:
            results["SQLite, 1 process"] = await measure([sqlite], signer, count, None)
        finally:
            sqlite.stop()
        with postgres_server(root / "postgres") as server:
            database = server.new_database()
            one = started(fixtures, root / "pg-a", database)
            try:
                results["PostgreSQL, 1 process"] = await measure([one], signer, count, server)
                two = started(fixtures, root / "pg-b", database)
                try:
                    results["PostgreSQL, 2 processes"] = await measure([one, two], signer, count, server)
                finally:
                    two.stop()
            finally:
                one.stop()

    print(f"complete certificate logins through the HTTP API, {count} per row, {CLIENTS} clients, this machine's")
    print(f"{os.cpu_count()} cores shared by the load generator (which signs), the verifier(s) and the database")
    print(f"  {'':26}{'logins/s':>10}{'verifier CPU':>14}{'database CPU':>14}{'generator CPU':>15}   (per login)")
    bare_ms = results["bare aiohttp (baseline)"][1]
    for name, (rate, verifier_ms, database_ms, generator_ms) in results.items():
        database = f"{database_ms:.2f} ms" if name.startswith("PostgreSQL") else "in process"
        print(f"  {name:26}{rate:>10.0f}{verifier_ms:>11.2f} ms{database:>14}{generator_ms:>12.2f} ms")
    for name in ("SQLite, 1 process", "PostgreSQL, 1 process"):
        verifier_ms = results[name][1]
        own = verifier_ms - bare_ms
        print(f"  {name}: the verifier's own CPU (verifier - bare) {own:.2f} ms; {verifier_ms / bare_ms:.1f}x bare")
    one_rate, two_rate = results["PostgreSQL, 1 process"][0], results["PostgreSQL, 2 processes"][0]
    print(f"  scaling, 2 processes vs 1 on PostgreSQL: {two_rate / one_rate:.2f}x (goal >= 1.6)")


if __name__ == "__main__":
    asyncio.run(main())
