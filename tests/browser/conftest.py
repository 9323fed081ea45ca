"""Fixtures the browser flows share."""

from __future__ import annotations

import pytest

from tests.harness.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The verifier's store for a flow run on both: None (SQLite in the test's folder), or a fresh
    database on the tests' PostgreSQL."""
    if request.param == "sqlite":
        return None
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.new_database()
