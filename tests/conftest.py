"""Shared test fixtures: real SoftHSM2 tokens built from softhsm_fixtures, one driver at a time.

SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and PyKCS11 shares one loaded
module between all its users. So every test that loads the module closes its driver before
the next one starts (the ``driver`` fixture does), and tests that change tokens get a fixture
set of their own (``fresh_fixtures``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cert_agent.agent.config import AgentConfig
from cert_agent.agent.listener import ConnectionGuard
from cert_agent.agent.tokens import TokenService
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures, build_fixtures


@pytest.fixture(scope="session", autouse=True)
def private_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user agent lock lives in $XDG_RUNTIME_DIR: tests use their own, never the
    machine user's (where a real agent may run)."""
    path = tmp_path_factory.mktemp("runtime")
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = saved


def _use(fixtures: Fixtures) -> None:
    os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)


@pytest.fixture(scope="session")
def shared_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    """One fixture set for tests that only read tokens."""
    return build_fixtures(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def fixtures(shared_fixtures: Fixtures) -> Fixtures:
    _use(shared_fixtures)
    return shared_fixtures


@pytest.fixture
def fresh_fixtures(tmp_path: Path) -> Fixtures:
    """A fixture set of this test's own, for tests that change PINs or remove tokens."""
    built = build_fixtures(tmp_path / "fixtures")
    _use(built)
    return built


@pytest.fixture
def driver(fixtures: Fixtures) -> Iterator[Pkcs11Driver]:
    loaded = Pkcs11Driver([fixtures.module], pin_max_tries=10)
    yield loaded
    loaded.close()


@pytest.fixture
def fresh_driver(fresh_fixtures: Fixtures) -> Iterator[Pkcs11Driver]:
    loaded = Pkcs11Driver([fresh_fixtures.module], pin_max_tries=10)
    yield loaded
    loaded.close()


# --- the agent daemon, in this process, on a free loopback port ---------------------------------

ALLOWED_ORIGIN = "https://etax.example.com"
LOCAL_PAGE_ORIGIN_HOST = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningAgent:
    config: AgentConfig
    service: TokenService
    fixtures: Fixtures
    guard: ConnectionGuard

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.config.port}/ws"


def agent_config(fixtures: Fixtures, **overrides: Any) -> AgentConfig:
    base = AgentConfig(
        port=free_port(),
        allowed_origins=(ALLOWED_ORIGIN,),
        modules=(fixtures.module,),
        pin_max_tries=10,
        poll_interval=0.2,
        listen_hosts=("127.0.0.1",),
    )
    return replace(base, **overrides)


@asynccontextmanager
async def running_agent(fixtures: Fixtures, **overrides: Any) -> AsyncIterator[RunningAgent]:
    from cert_agent.agent.server import GUARD_KEY, start

    config = agent_config(fixtures, **overrides)
    runner, service = await start(config)
    try:
        yield RunningAgent(config, service, fixtures, runner.app[GUARD_KEY])
    finally:
        await runner.cleanup()
        await service.stop()


@pytest_asyncio.fixture
async def agent(fixtures: Fixtures) -> AsyncIterator[RunningAgent]:
    async with running_agent(fixtures) as running:
        yield running


@pytest_asyncio.fixture
async def fresh_agent(fresh_fixtures: Fixtures) -> AsyncIterator[RunningAgent]:
    async with running_agent(fresh_fixtures) as running:
        yield running


# --- tokens made on the fixture tokens, and a verifier over a real SQLite file ------------------


def make_token(fixtures: Fixtures, cert_name: str, origin: str, nonce: str) -> dict[str, Any]:
    """A Web eID token signed on the SoftHSM2 token for ``origin`` and ``nonce``, as the agent
    makes it (same functions), without a daemon in between."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from cert_agent.agent.authtoken import auth_token, choose_algorithm, signed_data
    from cert_agent.pin import Pin

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
