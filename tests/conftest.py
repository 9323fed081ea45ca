"""Shared test fixtures: real SoftHSM2 tokens built from softhsm_fixtures, one driver at a time.

SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and PyKCS11 shares one loaded
module between all its users. So every test that loads the module closes its driver before
the next one starts (the ``driver`` fixture does), and tests that change tokens get a fixture
set of their own (``fresh_fixtures``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.skf_build import SkfFixtures, build_skf_fixtures
from tests.harness.agent import RunningAgent, running_agent
from tests.harness.postgres import PostgresServer, postgres_bin, postgres_server
from tests.harness.verifier import Clock, Verifier, verifier_at


@pytest.fixture(scope="session", autouse=True)
def private_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user agent lock lives in $XDG_RUNTIME_DIR, the pairing keys in $XDG_STATE_HOME:
    tests use their own, never the machine user's (where a real agent may run)."""
    path = tmp_path_factory.mktemp("runtime")
    path.chmod(0o700)  # what XDG requires of it (platformdirs falls back from anything else)
    state = tmp_path_factory.mktemp("state")  # the agents' pairing keys
    saved = {name: os.environ.get(name) for name in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME")}
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    os.environ["XDG_STATE_HOME"] = str(state)
    yield path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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


@pytest.fixture(scope="session")
def shared_skf_fixtures(tmp_path_factory: pytest.TempPathFactory) -> SkfFixtures:
    """One set of SM2 media on the software SKF device, for tests that only read them."""
    return build_skf_fixtures(tmp_path_factory.mktemp("skf-fixtures"))


@pytest.fixture
def skf_fixtures(shared_skf_fixtures: SkfFixtures, monkeypatch: pytest.MonkeyPatch) -> SkfFixtures:
    monkeypatch.setenv("SOFTSKF_DIR", str(shared_skf_fixtures.store.root))  # the library reads it at each call
    return shared_skf_fixtures


@pytest.fixture
def fresh_skf_fixtures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SkfFixtures:
    """SM2 media of this test's own, for tests that change PINs or pull devices out."""
    built = build_skf_fixtures(tmp_path / "skf-fixtures")
    monkeypatch.setenv("SOFTSKF_DIR", str(built.store.root))
    return built


@pytest.fixture
def driver(fixtures: Fixtures) -> Iterator[Pkcs11Driver]:
    loaded = Pkcs11Driver([fixtures.module])
    yield loaded
    loaded.close()


@pytest.fixture
def fresh_driver(fresh_fixtures: Fixtures) -> Iterator[Pkcs11Driver]:
    loaded = Pkcs11Driver([fresh_fixtures.module])
    yield loaded
    loaded.close()


# --- the agent daemon, in this process, on a free loopback port ---------------------------------


@pytest_asyncio.fixture
async def agent(fixtures: Fixtures) -> AsyncIterator[RunningAgent]:
    async with running_agent(fixtures) as running:
        yield running


@pytest_asyncio.fixture
async def fresh_agent(fresh_fixtures: Fixtures) -> AsyncIterator[RunningAgent]:
    async with running_agent(fresh_fixtures) as running:
        yield running


@pytest.fixture
async def verifier(fixtures: Fixtures, tmp_path: Path) -> AsyncIterator[Verifier]:
    async with verifier_at(fixtures, tmp_path, Clock(dt.datetime.now(dt.UTC))) as running:
        yield running


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.harness.fuzz import CASES

    if CASES:
        parts = ", ".join(f"{target} {count}" for target, count in sorted(CASES.items()))
        terminalreporter.write_line(f"fuzz cases run: {sum(CASES.values())} ({parts})")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's package, an unprivileged user)."""
    if postgres_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed here (scripts/setup.sh installs it)")
    with postgres_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server
