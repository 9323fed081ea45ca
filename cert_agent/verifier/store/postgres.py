"""``Database`` on PostgreSQL, through psycopg 3's async connection pool: what several verifier
instances share.

Connections are in autocommit mode, so a read is one round trip; a write is an explicit
transaction. ``lock`` takes a transaction-scoped advisory lock, which serialises the few
check-then-write steps (the SMS send limits, migrations) across instances. Every statement
and lock wait is bounded (5 s) so a stuck database answers 503, not a hung request.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store.database import Row
from cert_agent.verifier.store.schema import Dialect

STATEMENT_TIMEOUT_MS = 5000


@functools.lru_cache(maxsize=256)
def _sql(sql: str) -> str:
    """``?`` placeholders (the store's SQL) as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.IntegrityError:
        raise
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise StoreUnavailable(type(exc).__name__ + ": " + str(exc).strip()) from None


class _PostgresConnection:
    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(_sql(sql), params)
        return cursor.rowcount

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._conn.execute(_sql(sql), params)
        return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._conn.execute(_sql(sql), params)
        return list(await cursor.fetchall())

    async def lock(self, name: str) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cert-verifier:" + name,))


class PostgresDatabase:
    dialect = Dialect.POSTGRESQL

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresDatabase:
        """A pool of up to ``pool_size`` connections to ``url`` (a libpq URL; a password may come
        from the environment as PGPASSWORD or from ~/.pgpass, as libpq reads them)."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=STATEMENT_TIMEOUT_MS / 1000,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
            },
            name="cert-verifier",
        )
        with _store_errors():
            await pool.open(wait=True, timeout=STATEMENT_TIMEOUT_MS / 1000)
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_PostgresConnection]:
        with _store_errors():
            async with self._pool.connection() as conn:
                yield _PostgresConnection(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresConnection]:
        with _store_errors():
            async with self._pool.connection() as conn, conn.transaction():
                yield _PostgresConnection(conn)

    async def close(self) -> None:
        await self._pool.close()
