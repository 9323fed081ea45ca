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
Query = tuple[str, Sequence[Any]]  # a statement and its parameters


class Written(Protocol):
    """What ``Connection.write`` returns."""

    @property
    def rowcount(self) -> int: ...  # the rows the statement changed (read after the transaction)


class Connection(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def write(self, sql: str, params: Sequence[Any] = ()) -> Written:
        """A statement whose row count is not needed before the transaction ends. In a
        transaction on PostgreSQL it is sent with the next statement that is waited for (at the
        latest the COMMIT), and a failure of it fails that statement: the transaction fails as a
        whole either way. Its row count is known once the transaction has ended."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetch_each(self, queries: Sequence[Query]) -> list[list[Row]]:
        """Several reads that do not depend on each other, in order: each one's rows. One round
        trip on PostgreSQL (its pipeline), where one per statement is most of a read's cost."""
        ...

    async def execute_each(self, statements: Sequence[Query]) -> list[int]:
        """Several writes, in order: the rows each changed. One round trip on PostgreSQL (its
        pipeline: when one fails, those after it are not run); for writes that need not be one
        transaction, such as a change and its audit entry."""
        ...

    async def fetch_after(self, writes: Sequence[Query], queries: Sequence[Query]) -> list[list[Row]]:
        """``writes`` as ``execute_each``, then reads as ``fetch_each`` (which see the writes):
        one round trip on PostgreSQL; when a write fails, nothing after it is run."""
        ...

    async def lock(self, *names: str) -> None:
        """Hold locks named ``names`` until this transaction ends, taken in the order given (one
        round trip): what lets several verifier instances check and write a limit without both
        passing it."""
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
