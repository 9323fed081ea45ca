"""Shared test fixtures: real SoftHSM2 tokens built from softhsm_fixtures, one driver at a time.

SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and PyKCS11 shares one loaded
module between all its users. So every test that loads the module closes its driver before
the next one starts (the ``driver`` fixture does), and tests that change tokens get a fixture
set of their own (``fresh_fixtures``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures, build_fixtures


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
