"""``Database`` on PostgreSQL, through psycopg 3's async connection pool: what several verifier
instances share.

Connections are in autocommit mode, so a read is one round trip; a write is an explicit
transaction. ``lock`` takes a transaction-scoped advisory lock, which serialises the few
check-then-write steps (the SMS send limits, migrations) across instances. Every statement
and lock wait is bounded (5 s) so a stuck database answers 503, not a hung request.

Each round trip wakes a backend process, which costs the verifier far more than the statement
does (docs/performance.md, issue 23). So a transaction that is not ``slow`` runs in psycopg's
pipeline mode: its BEGIN, its locks and its ``write``s are queued and go with the next statement
whose answer the store waits for, and its COMMIT with the last of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import AsyncPipeline, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store.database import Query, Row, Written
from cert_agent.verifier.store.schema import Dialect

STATEMENT_TIMEOUT_MS = 5000
log = logging.getLogger("cert_agent.verifier.store")


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
    """``pipeline``: the transaction's pipeline, when it runs in one (see the module's doc)."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], pipeline: AsyncPipeline | None = None) -> None:
        self._conn = conn
        self._pipeline = pipeline

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(_sql(sql), params)
        if self._pipeline is not None:
            await self._pipeline.sync()  # its row count, and what was queued before it
        return cursor.rowcount

    async def write(self, sql: str, params: Sequence[Any] = ()) -> Written:
        return await self._conn.execute(_sql(sql), params)  # in a pipeline: sent with the next round trip

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._conn.execute(_sql(sql), params)
        return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._conn.execute(_sql(sql), params)
        return list(await cursor.fetchall())

    async def fetch_each(self, queries: Sequence[Query]) -> list[list[Row]]:
        return await self.fetch_after((), queries)

    async def execute_each(self, statements: Sequence[Query]) -> list[int]:
        async with self._batch():
            cursors = [await self._conn.execute(_sql(sql), params) for sql, params in statements]
        return [cursor.rowcount for cursor in cursors]

    async def fetch_after(self, writes: Sequence[Query], queries: Sequence[Query]) -> list[list[Row]]:
        async with self._batch():
            for sql, params in writes:
                await self._conn.execute(_sql(sql), params)
            cursors = [await self._conn.execute(_sql(sql), params) for sql, params in queries]
        return [list(await cursor.fetchall()) for cursor in cursors]

    @asynccontextmanager
    async def _batch(self) -> AsyncIterator[None]:
        """Statements sent together, their answers read in one round trip at the end."""
        if self._pipeline is None:
            async with self._conn.pipeline():
                yield
        else:  # a pipeline of our own here would first send what the transaction has queued
            yield
            await self._pipeline.sync()

    async def lock(self, *names: str) -> None:
        """One statement; PostgreSQL evaluates a select list left to right, so the order holds."""
        calls = ", ".join("pg_advisory_xact_lock(hashtext(%s))" for _ in names)
        await self._conn.execute(f"SELECT {calls}", ["cert-verifier:" + name for name in names])


@asynccontextmanager
async def _pipelined_transaction(conn: psycopg.AsyncConnection[dict[str, Any]]) -> AsyncIterator[AsyncPipeline]:
    """BEGIN and COMMIT queued in a pipeline, so each goes with a statement's round trip (the
    COMMIT with the last, as the pipeline ends). On any failure (a statement's, the COMMIT's, a
    cancelled request) it rolls back before the connection goes back to the pool; a broken
    connection the pool discards."""
    try:
        async with conn.pipeline() as pipeline:
            await conn.execute("BEGIN")
            try:
                yield pipeline
            except BaseException:
                with suppress(psycopg.Error):
                    await pipeline.sync()  # what failed aborted the rest: collect it quietly
                raise
            await conn.execute("COMMIT")
    except BaseException:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            with suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
        raise


class PostgresDatabase:
    dialect = Dialect.POSTGRESQL
    recheck_interval = 5.0  # a waiting page is woken by NOTIFY; this only covers a lost notification

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]], url: str) -> None:
        self._pool = pool
        self._url = url
        self._listeners: dict[str, asyncio.Task[None]] = {}

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
        return cls(pool, url)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_PostgresConnection]:
        with _store_errors():
            async with self._pool.connection() as conn:
                yield _PostgresConnection(conn)

    @asynccontextmanager
    async def transaction(self, *, slow: bool = False) -> AsyncIterator[_PostgresConnection]:
        """Not ``slow``: in a pipeline (see the module's doc); ``slow`` (a migration, an import,
        a purge): one statement at a time, as psycopg runs a transaction."""
        with _store_errors():
            async with self._pool.connection() as conn:
                if slow:
                    async with conn.transaction():
                        yield _PostgresConnection(conn)
                else:
                    async with _pipelined_transaction(conn) as pipeline:
                        yield _PostgresConnection(conn, pipeline)

    async def notify(self, channel: str, payload: str) -> None:
        async with self.connection() as db:
            await db.execute("SELECT pg_notify(?, ?)", (channel, payload))

    async def listen(self, channel: str, deliver: Callable[[str], None]) -> None:
        """A connection of its own LISTENs on ``channel`` (reconnecting after a failure); started
        once, it runs until ``close``."""
        if channel not in self._listeners:
            self._listeners[channel] = asyncio.create_task(self._relay(channel, deliver))

    async def _relay(self, channel: str, deliver: Callable[[str], None]) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    async for notification in conn.notifies():
                        deliver(notification.payload)
            except psycopg.Error as exc:
                log.warning("LISTEN %s failed, again in 1 s: %s", channel, type(exc).__name__)
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        for task in self._listeners.values():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._listeners.clear()
        await self._pool.close()
