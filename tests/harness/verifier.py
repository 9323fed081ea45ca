"""A real verifier (aiohttp, SQLite) in the test's own process, and Web eID tokens signed on the
fixture tokens for it."""

from __future__ import annotations

import base64
import datetime as dt
import json
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cert_agent.drivers.pkcs11 import Pkcs11Driver
from cert_agent.verifier.app import create_app
from cert_agent.verifier.login import LoginService
from cert_agent.verifier.store import SqlStore, Store
from cert_agent.verifier.store.records import SmsLimits
from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import verifier_records
from softhsm_fixtures.verifier_service import OUTBOX, seeded_login_service
from tests.harness.agent import free_port


def make_auth_token(fixtures: Fixtures, cert_name: str, origin: str, nonce: str) -> dict[str, Any]:
    """A Web eID token signed on the SoftHSM2 token for ``origin`` and ``nonce``, as the agent
    makes it (same functions), without a daemon in between."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from cert_agent.common.webeid import auth_token, choose_algorithm, signed_data
    from cert_agent.drivers.pin import Pin

    fixture_token = fixtures.token_of(cert_name)
    certificate = fixtures.certificate(cert_name)
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = choose_algorithm(None, "EC", key.curve.key_size)
    else:
        algorithm = choose_algorithm(None, "RSA", 2048)
    loaded = Pkcs11Driver([fixtures.module])
    try:
        signature = loaded.sign(
            loaded.find_token(label=fixture_token.label),
            bytes.fromhex(fixtures.cert(cert_name).cert_id),
            Pin(fixture_token.pin),
            signed_data(origin, nonce, algorithm),
            algorithm,
        )
    finally:
        loaded.close()
    return auth_token(base64.b64encode(certificate.public_bytes(Encoding.DER)).decode(), algorithm, signature)


ORIGIN = "https://etax.example.com"
PAGE_HEADERS = {"Origin": ORIGIN}  # what a browser sends with the verifier's own pages' requests


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Verifier:
    url: str
    store: Store
    outbox: Path
    clock: Clock
    fixtures: Fixtures
    session: aiohttp.ClientSession
    sqlite_file: Path  # the database file, when the store is on SQLite
    login: LoginService

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.url + path, json={} if body is None else body, **kwargs) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.json()

    def last_code(self) -> str:
        return str(json.loads(self.outbox.read_text(encoding="utf-8").splitlines()[-1])["code"])

    async def certificate_step(self, cert_name: str, kind: str = "enterprise") -> tuple[int, dict[str, Any]]:
        _, challenge = await self.post("/api/challenge")
        token = make_auth_token(self.fixtures, cert_name, ORIGIN, challenge["nonce"])
        return await self.post(
            "/api/login/certificate", {"kind": kind, "authToken": token, "nonce": challenge["nonce"]}
        )


@asynccontextmanager
async def verifier_at(
    fixtures: Fixtures,
    directory: Path,
    clock: Clock,
    *,
    database: str | None = None,
    sms_limits: SmsLimits | None = None,
) -> AsyncIterator[Verifier]:
    """A verifier on SQLite in ``directory``, or on the PostgreSQL ``database`` URL."""
    login = await seeded_login_service(
        fixtures, directory, ORIGIN, clock=clock, database=database, sms_limits=sms_limits
    )
    runner = web.AppRunner(create_app(login))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=PAGE_HEADERS) as session:
            yield Verifier(
                f"http://127.0.0.1:{port}",
                login.store,
                directory / OUTBOX,
                clock,
                fixtures,
                session,
                directory / "verifier.db",
                login,
            )
    finally:
        await runner.cleanup()


class VerifierProcess:
    """``cert-verifier serve`` as a real process, on SQLite in ``directory`` or on a shared
    PostgreSQL ``database``; several can share one ``origin`` as instances behind a load
    balancer do."""

    def __init__(
        self,
        fixtures: Fixtures,
        directory: Path,
        *,
        database: str | None = None,
        origin: str | None = None,
        settings: str = "",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.origin = origin or self.url
        self.directory = directory
        self.database = database  # None: SQLite in directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "verifier.toml"
        self.config.write_text(
            f'origin = "{self.origin}"\nport = {self.port}\ndatabase = "{database or "v.db"}"\n'
            f'outbox = "outbox.jsonl"\ntrust_anchors = ["{fixtures.root_ca}"]\n'
            f'intermediates = ["{fixtures.issuing_ca}"]\ncrls = ["{fixtures.crl}"]\n{settings}',
            encoding="utf-8",
        )
        seed = directory / "seed.json"
        seed.write_text(json.dumps(verifier_records(), ensure_ascii=False), encoding="utf-8")
        target = database or str(directory / "v.db")
        command = [sys.executable, "-m", "cert_agent.verifier", "import", "--db", target, str(seed)]
        subprocess.run(command, check=True, capture_output=True)
        self.process: subprocess.Popen[str] | None = None

    def start(self, *, nofile: int | None = None) -> None:
        """Start it; ``nofile`` sets its RLIMIT_NOFILE (systemd's default is 1024)."""
        self.log = (self.directory / "stderr.log").open("w", encoding="utf-8")  # a file: never a full pipe

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "cert_agent.verifier", "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            preexec_fn=limit,
        )
        assert self.process.stdout is not None and "listening" in self.process.stdout.readline()
        # The rest of its stdout (with the outbox sender, a line per SMS code sent) goes on being
        # read, into a file: a full pipe would block the process's event loop in a print.
        self.out = (self.directory / "stdout.log").open("w", encoding="utf-8")
        self.drain = threading.Thread(target=shutil.copyfileobj, args=(self.process.stdout, self.out), daemon=True)
        self.drain.start()

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it; what it wrote to stderr."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self._ended()

    def _ended(self) -> str:
        assert self.process is not None
        self.process.wait(timeout=20)
        self.drain.join(timeout=5)
        self.out.close()
        self.log.close()
        return (self.directory / "stderr.log").read_text(encoding="utf-8")

    def kill(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self._ended()

    def last_code(self) -> str:
        lines = (self.directory / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
        return str(json.loads(lines[-1])["code"])


BOUNDED_TABLES = ("challenges", "login_attempts", "sessions", "sms_sends", "failures", "scan_requests", "audit")


async def row_counts(store: SqlStore) -> dict[str, int]:
    """Rows in each table the purge bounds (and the audit log, which it keeps)."""
    counts: dict[str, int] = {}
    async with store.database.connection() as db:
        for table in BOUNDED_TABLES:
            row = await db.fetchone(f"SELECT COUNT(*) AS n FROM {table}")
            counts[table] = int(row["n"]) if row else 0
    return counts
