"""``Database`` on one SQLite file (WAL), through aiosqlite: every call runs on the
connection's own thread, so none blocks the event loop.

One connection serves the whole process; an asyncio lock lets one transaction or read use it
at a time (SQLite has one writer anyway, and every statement here is local and short).
Times and dates go in as ISO-8601 text, times in UTC.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store.database import Row
from cert_agent.verifier.store.schema import Dialect


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.DatabaseError as exc:  # locked past busy_timeout, disk full, I/O error, corrupt file
        raise StoreUnavailable(type(exc).__name__ + ": " + str(exc)) from None


async def _switch_to_wal(db: aiosqlite.Connection, patience: float) -> None:
    """SQLite does not call its busy handler while switching a new file's journal mode: when
    several instances open the same new file at once, all but one get "database is locked" at
    once. The switch is tried again until the busy timeout would have run out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or loop.time() >= deadline:
                raise
        await asyncio.sleep(0.02)


class _SqliteConnection:
    """Each call is one hop to the connection's thread and back (statements are prepared and
    cached by sqlite3; cursors are left to the garbage collector rather than closed with a
    second hop)."""

    def __init__(self, db: aiosqlite.Connection, path: Path | str = "") -> None:
        self._db = db
        self._path = str(path)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql, [_value(p) for p in params])
        return cursor.rowcount

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._db.execute_fetchall(sql, [_value(p) for p in params])
        return dict(next(iter(rows))) if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(row) for row in await self._db.execute_fetchall(sql, [_value(p) for p in params])]

    async def lock(self, name: str) -> None:
        """Nothing to do: a transaction here holds the whole file (BEGIN IMMEDIATE)."""


class SqliteDatabase:
    dialect = Dialect.SQLITE
    # No notifications between processes: a page waiting here for an answer given by another
    # process on the same file learns of it when the store is read again, this often (a local read).
    recheck_interval = 0.25

    def __init__(self, db: aiosqlite.Connection, path: Path | str = "") -> None:
        self._db = db
        self._path = str(path)
        self._connection = _SqliteConnection(db)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        if not Path(path).parent.is_dir():  # said here: aiosqlite's failed connect leaves its thread behind
            raise StoreUnavailable(f"no such directory: {Path(path).parent}")
        db = aiosqlite.connect(str(path), isolation_level=None)
        try:
            with _store_errors():
                await db
                db.row_factory = sqlite3.Row
                # first, so that a file another process is setting up is waited for, not refused
                await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                await _switch_to_wal(db, busy_timeout_ms / 1000)
                await db.execute("PRAGMA foreign_keys=ON")
                # WAL's usual setting: a commit survives the process being killed; a power cut may
                # lose the last commits but never the database's consistency
                await db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            with suppress(Exception):
                await db.close()  # stop its thread, which would otherwise outlive the event loop
            raise
        return cls(db, path)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            with _store_errors():
                yield self._connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            with _store_errors():
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                    await self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        with suppress(sqlite3.Error):
                            await self._db.execute("ROLLBACK")
                    raise

    async def quick_check(self) -> bool:
        """SQLite's quick_check on the file as it is on disk: on a connection of its own, so no
        page the service's connection caches can hide damage. True when it says "ok"."""
        return await asyncio.to_thread(_quick_check, self._path)

    async def notify(self, channel: str, payload: str) -> None:
        """Nothing to do: this process's own waiters are woken by the store; others re-read."""

    async def listen(self, channel: str, deliver: Callable[[str], None]) -> None:
        """Nothing to do (see ``notify``)."""

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()


def _quick_check(path: str) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error:  # "file is not a database" and its kin
        return False
    return row is not None and row[0] == "ok"
