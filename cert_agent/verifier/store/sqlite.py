"""``Database`` on one SQLite file (WAL) and one connection, which one coroutine uses at a time.

A statement runs where it cannot make the event loop wait:

- **on the event loop** when it can only compute: every statement of a login is a lookup or a
  small write by key, tens of microseconds of work. Here the connection's busy timeout is 0 and
  it never checkpoints, so a statement there neither waits for a lock nor writes the database
  file nor syncs it;
- **on the store's thread** when it may wait: run again there, with the busy timeout, when on the
  loop it found the file locked by another process (SQLITE_BUSY leaves the statement undone, a
  transaction as it was); the work a caller marks slow (a migration, an import, a purge); and
  everything from the start of a checkpoint until a write has been committed after it (the first
  write after a checkpoint starts the WAL again, and syncs its header).

The thread also checkpoints, on a connection of its own, after every ``CHECKPOINT_EVERY`` writes
(SQLite's automatic checkpoint would otherwise run inside a commit, on the loop). Before, every
statement took a hop to a thread and back (aiosqlite): two wake-ups, which made up nearly half of a
login's CPU (docs/performance.md). Times and dates go in as ISO-8601 text, times in UTC.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store.database import Query, Row, Written
from cert_agent.verifier.store.schema import Dialect

T = TypeVar("T")
CHECKPOINT_EVERY = 200  # committed writes between two checkpoints (SQLite's own default: 1000 pages)


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    """The statement's rows as dicts (the column names read once per statement, not per row)."""
    rows = cursor.fetchall()
    if not rows:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _first_row(cursor: sqlite3.Cursor) -> Row | None:
    row = cursor.fetchone()
    return None if row is None else dict(zip([column[0] for column in cursor.description], row, strict=True))


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # and its extended codes (BUSY_RECOVERY ...)


def _unavailable(error: BaseException | None) -> StoreUnavailable | None:
    """What ``_store_errors`` turns ``error`` into, if anything."""
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.IntegrityError):
        return StoreUnavailable(type(error).__name__ + ": " + str(error))
    return None


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:  # locked past busy_timeout, disk full, I/O error, corrupt file
        unavailable = _unavailable(exc)
        if unavailable is None:  # an integrity error: left as the driver raised it
            raise
        raise unavailable from None


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """The service's connection, set up on the store's thread (opening may wait for a lock)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # the loop and the thread, in turn
    try:
        # first, so that a file another process is setting up is waited for, not refused
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        _switch_to_wal(db, busy_timeout_ms / 1000)
        db.execute("PRAGMA foreign_keys=ON")
        # WAL's usual setting: a commit survives the process being killed; a power cut may lose the
        # last commits but never the database's consistency
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints (see the module's text)
        db.execute("PRAGMA busy_timeout=0")  # the loop's setting; the thread sets its own around each call
    except BaseException:
        db.close()
        raise
    return db


def _switch_to_wal(db: sqlite3.Connection, patience: float) -> None:
    """SQLite does not call its busy handler while switching a new file's journal mode: when
    several instances open the same new file at once, all but one get "database is locked" at
    once. The switch is tried again until the busy timeout would have run out."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


def _checkpoint(path: str, busy_timeout_ms: int) -> None:
    """A passive checkpoint (it waits for no reader or writer) on a connection of its own."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)) as db:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")


@dataclass(frozen=True)
class _Written:
    rowcount: int


class _SqliteConnection:
    """The connection as ``SqlStore`` sees it; each statement goes where ``SqliteDatabase`` says."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._database.run(sql, params, lambda cursor: cursor.rowcount)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> Written:
        return _Written(await self.execute(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self._database.run(sql, params, _first_row)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._database.run(sql, params, _rows)

    async def fetch_each(self, queries: Sequence[Query]) -> list[list[Row]]:
        return [await self.fetchall(sql, params) for sql, params in queries]  # on the loop: no round trips

    async def execute_each(self, statements: Sequence[Query]) -> list[int]:
        return [await self.execute(sql, params) for sql, params in statements]

    async def fetch_after(self, writes: Sequence[Query], queries: Sequence[Query]) -> list[list[Row]]:
        await self.execute_each(writes)
        return await self.fetch_each(queries)

    async def lock(self, *names: str) -> None:
        """Nothing to do: a transaction here holds the whole file (BEGIN IMMEDIATE)."""


class _Held(AbstractAsyncContextManager[_SqliteConnection]):
    """``async with database.connection()``: the connection under the database's lock, its
    failures as ``_store_errors`` says. A class rather than a generator: a login takes a dozen,
    and the generator's machinery cost more than the lock (docs/performance.md, issue 23)."""

    def __init__(self, lock: asyncio.Lock, connection: _SqliteConnection) -> None:
        self._lock = lock
        self._connection = connection

    async def __aenter__(self) -> _SqliteConnection:
        await self._lock.acquire()
        return self._connection

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        self._lock.release()
        unavailable = _unavailable(error)
        if unavailable is not None:
            raise unavailable from None


class SqliteDatabase:
    dialect = Dialect.SQLITE
    # No notifications between processes: a page waiting here for an answer given by another
    # process on the same file learns of it when the store is read again, this often (a local read).
    recheck_interval = 0.25

    def __init__(self, db: sqlite3.Connection, thread: ThreadPoolExecutor, path: str, busy_timeout_ms: int) -> None:
        self._db = db
        self._thread = thread  # one thread: statements that may wait, and checkpoints
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._connection = _SqliteConnection(self)
        self._lock = asyncio.Lock()
        self._slow = False  # inside work marked slow: every statement on the thread
        self._restart_pending = True  # until a write is committed on the thread (a new process may start the WAL)
        self._checkpoint: asyncio.Future[None] | None = None
        self._writes = 0  # committed writes since the last checkpoint
        self._changes = db.total_changes

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        if not Path(path).parent.is_dir():
            raise StoreUnavailable(f"no such directory: {Path(path).parent}")
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            with _store_errors():
                db = await asyncio.get_running_loop().run_in_executor(thread, _connect, str(path), busy_timeout_ms)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, thread, str(path), busy_timeout_ms)

    # --- where a statement runs -----------------------------------------------------------------

    async def run(self, sql: str, params: Sequence[Any], result: Callable[[sqlite3.Cursor], T]) -> T:
        """``result`` of the statement's cursor: on the loop when the statement cannot wait, else
        (or when on the loop it found the file locked) on the thread."""
        values = [_value(p) for p in params]
        if not (self._slow or self._restart_pending):
            try:
                answer = result(self._db.execute(sql, values))
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            else:
                self._count_writes()
                return answer
        answer = await asyncio.get_running_loop().run_in_executor(self._thread, self._waiting, sql, values, result)
        if self._restart_pending and self._checkpoint_over() and self._committed_since(self._changes):
            self._restart_pending = False  # the WAL has started again, on the thread
        self._count_writes()
        return answer

    def _waiting(self, sql: str, values: list[Any], result: Callable[[sqlite3.Cursor], T]) -> T:
        """On the thread: the statement with the busy timeout (it may wait for another process)."""
        self._db.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            return result(self._db.execute(sql, values))
        finally:
            self._db.execute("PRAGMA busy_timeout=0")

    def _checkpoint_over(self) -> bool:
        return self._checkpoint is None or self._checkpoint.done()

    def _committed_since(self, changes: int) -> bool:
        return not self._db.in_transaction and self._db.total_changes != changes

    def _count_writes(self) -> None:
        """After each statement: a committed write counts towards the next checkpoint."""
        if not self._committed_since(self._changes):
            return
        self._changes = self._db.total_changes
        self._writes += 1
        if self._writes >= CHECKPOINT_EVERY and self._checkpoint_over():
            self._writes = 0
            self._restart_pending = True  # from now until a write after the checkpoint: the thread
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(self._thread, _checkpoint, self._path, self._busy_timeout_ms)
            self._checkpoint.add_done_callback(_ignore_failure)

    # --- the Database interface -----------------------------------------------------------------

    def connection(self) -> _Held:
        return _Held(self._lock, self._connection)

    @asynccontextmanager
    async def transaction(self, *, slow: bool = False) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            self._slow = slow
            try:
                with _store_errors():
                    await self._connection.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._connection
                        await self._connection.execute("COMMIT")
                    except BaseException:
                        if self._db.in_transaction:
                            with suppress(sqlite3.Error):
                                await self._connection.execute("ROLLBACK")
                        raise
            finally:
                self._slow = False

    async def quick_check(self) -> bool:
        """SQLite's quick_check on the file as it is on disk: on a connection of its own, so no
        page the service's connection caches can hide damage. True when it says "ok"."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, _quick_check, self._path)

    async def notify(self, channel: str, payload: str) -> None:
        """Nothing to do: this process's own waiters are woken by the store; others re-read."""

    async def listen(self, channel: str, deliver: Callable[[str], None]) -> None:
        """Nothing to do (see ``notify``)."""

    async def close(self) -> None:
        async with self._lock:
            if self._checkpoint is not None:
                with suppress(Exception):
                    await self._checkpoint
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            self._thread.shutdown(wait=True)


def _ignore_failure(future: asyncio.Future[None]) -> None:
    """A checkpoint that failed (the file locked past the busy timeout, say) is tried again after
    the next ``CHECKPOINT_EVERY`` writes; the WAL only grows meanwhile."""
    if not future.cancelled():
        future.exception()


def _quick_check(path: str) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error:  # "file is not a database" and its kin
        return False
    return row is not None and row[0] == "ok"
