"""What the verifier keeps: records (``records``), one interface per concern (``interfaces``),
the schema for both databases (``schema``), and the store in SQL (``sql``) over SQLite
(``sqlite``) or PostgreSQL (``postgres``). ``open_store`` picks one by its location."""

from __future__ import annotations

from pathlib import Path

from cert_agent.verifier.store.database import Database
from cert_agent.verifier.store.interfaces import (
    AuditLog,
    Challenges,
    Directory,
    LoginAttempts,
    Sessions,
    SmsSends,
    Store,
)
from cert_agent.verifier.store.records import (
    ACCEPTS,
    AGREEMENT_STATUSES,
    CROSS_REGION_KINDS,
    ROLES,
    Action,
    Agreement,
    AuditEntry,
    CrossRegionIdentity,
    Enterprise,
    FactorState,
    LoginAttempt,
    LoginKind,
    Person,
    Session,
    SmsLimit,
    SmsLimits,
    Step,
)
from cert_agent.verifier.store.schema import MIGRATIONS
from cert_agent.verifier.store.sql import INTEGRITY_INTERVAL, SqlStore
from cert_agent.verifier.store.sqlite import SqliteDatabase

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def is_postgresql(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRESQL_SCHEMES)


async def open_store(
    location: str | Path, *, pool_size: int = 10, integrity_interval: float = INTEGRITY_INTERVAL
) -> SqlStore:
    """The store at ``location`` — a ``postgresql://`` URL or an SQLite file path — with its
    schema brought up to date; SQLite's quick check (health) at most every
    ``integrity_interval`` seconds."""
    if is_postgresql(location):
        from cert_agent.verifier.store.postgres import PostgresDatabase

        database: Database = await PostgresDatabase.open(str(location), pool_size=pool_size)
    else:
        database = await SqliteDatabase.open(location)
    store = SqlStore(database, integrity_interval=integrity_interval)
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


__all__ = [
    "ACCEPTS",
    "AGREEMENT_STATUSES",
    "CROSS_REGION_KINDS",
    "MIGRATIONS",
    "ROLES",
    "Action",
    "Agreement",
    "AuditEntry",
    "AuditLog",
    "Challenges",
    "CrossRegionIdentity",
    "Directory",
    "Enterprise",
    "FactorState",
    "LoginAttempt",
    "LoginAttempts",
    "LoginKind",
    "Person",
    "Session",
    "Sessions",
    "SmsLimit",
    "SmsLimits",
    "SmsSends",
    "SqlStore",
    "Step",
    "Store",
    "is_postgresql",
    "open_store",
]
