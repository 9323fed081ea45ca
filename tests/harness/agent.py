"""A real agent in the test's own process, and a page's WebSocket client for it."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from cert_agent.agent.client import AgentClient
from cert_agent.agent.config import AgentConfig
from cert_agent.agent.tokens import TokenService
from softhsm_fixtures import Fixtures
from tests.harness.signatures import verify_signature
from tests.harness.sm2 import sm2_verifies

ALLOWED_ORIGIN = "https://etax.example.com"
LOCAL_PAGE_ORIGIN_HOST = "127.0.0.1"


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port that nothing listens on, for a server the test starts next.

    Taken below the kernel's ephemeral range, not from it (``bind(0)``): a port from that range
    can go to some outgoing connection between this probe and the server's own bind, which
    happened under load. A port is handed out once per test run."""
    low = _ephemeral_ports_start()
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere the range differs, and a clash is only unlikely


@dataclass
class RunningAgent:
    config: AgentConfig
    service: TokenService
    fixtures: Fixtures

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}/ws"


def agent_config(fixtures: Fixtures, **overrides: Any) -> AgentConfig:
    base = AgentConfig(
        port=free_port(),
        port_range=1,
        allowed_origins=(ALLOWED_ORIGIN,),
        modules=(fixtures.module,),
        pin_max_tries=10,
        poll_interval=0.2,
        listen_hosts=("127.0.0.1",),
        watch_readers=False,  # the PC/SC tests (drivers/test_pcsc.py) switch it on, with their own pcscd
    )
    return replace(base, **overrides)


@asynccontextmanager
async def running_agent(fixtures: Fixtures, **overrides: Any) -> AsyncIterator[RunningAgent]:
    from cert_agent.agent.server import CONFIG_KEY, SERVICE_KEY, start

    runner = await start(agent_config(fixtures, **overrides))
    try:
        yield RunningAgent(runner.app[CONFIG_KEY], runner.app[SERVICE_KEY], fixtures)
    finally:
        await runner.cleanup()


Client = AgentClient  # a page's connection: the protocol client the cert-agent command uses too

NONCE = base64.b64encode(os.urandom(32)).decode()


@asynccontextmanager
async def connect(agent: RunningAgent, origin: str = ALLOWED_ORIGIN) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session, session.ws_connect(agent.url, origin=origin) as ws:
        yield Client(ws)


def certificate_of(fixtures: Fixtures, cert_name: str) -> tuple[str, str]:
    token = fixtures.token_of(cert_name)
    return f"{fixtures.module}#{token.serial}", fixtures.cert(cert_name).cert_id


def verify_auth_token(token: dict[str, Any], origin: str, nonce: str) -> None:
    """Check a Web eID token independently: pyca/cryptography for ES/PS/RS, the openssl command for
    SM2SM3 (at the GM/T 0009 default ID)."""
    if token["algorithm"] == "SM2SM3":
        data = hashlib.new("sm3", origin.encode()).digest() + hashlib.new("sm3", nonce.encode()).digest()
        der = base64.b64decode(token["unverifiedCertificate"])
        assert sm2_verifies(der, data, base64.b64decode(token["signature"])), "the SM2 signature does not verify"
        return
    certificate = x509.load_der_x509_certificate(base64.b64decode(token["unverifiedCertificate"]))
    name = f"sha{token['algorithm'][2:]}"
    data = hashlib.new(name, origin.encode()).digest() + hashlib.new(name, nonce.encode()).digest()
    verify_signature(certificate.public_key(), base64.b64decode(token["signature"]), data, token["algorithm"])


def cert_agent(
    fixtures: Fixtures, *args: str, stdin: str | None = None, module: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``cert-agent`` command as a user runs it, on the fixture tokens' module."""
    return subprocess.run(
        [sys.executable, "-m", "cert_agent", *args, "--module", module or fixtures.module],
        input=stdin,
        env=fixtures.env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
