"""What ``SqlStore`` needs of a database: a connection for single statements (reads, and writes
of one statement), a transaction for writes of several.

Two implementations: ``sqlite.SqliteDatabase`` (one file, the embedded default) and
``postgres.PostgresDatabase`` (a pool, for several verifier instances). SQL is written once,
with ``?`` placeholders; each implementation adapts it and its parameters to its driver.
Failures of the database itself (unreachable, locked too long, disk full) are raised as
``StoreUnavailable`` (HTTP 503); integrity errors are left as the driver raised them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from cert_agent.verifier.store.schema import Dialect

Row = Mapping[str, Any]


class Connection(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def lock(self, name: str) -> None:
        """Hold a lock named ``name`` until this transaction ends: what lets several verifier
        instances check and write a limit without both passing it."""
        ...


class Database(Protocol):
    dialect: Dialect
    recheck_interval: float  # seconds a waiter for another instance's answer goes before reading again

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection in autocommit: each statement is a transaction of its own."""
        ...

    def transaction(self, *, slow: bool = False) -> AbstractAsyncContextManager[Connection]:
        """Several statements: all of them or none. ``slow``: work that may take long (a
        migration, an import, a purge), which SQLite then keeps off the event loop."""
        ...

    async def notify(self, channel: str, payload: str) -> None:
        """Tell the other instances on this database (PostgreSQL's NOTIFY; SQLite has no others)."""
        ...

    async def listen(self, channel: str, deliver: Callable[[str], None]) -> None:
        """From now on, hand every payload notified on ``channel`` by any instance to ``deliver``
        (at most one listener per channel; calling again does nothing)."""
        ...

    async def close(self) -> None: ...
