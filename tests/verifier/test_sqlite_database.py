"""Where the SQLite store runs its statements: on the event loop only what cannot wait; on the
store's thread whatever may (a lock held by another process, slow work, the file's syncs).

The other processes here are real ones: a Python process holding the file's write lock, and
``strace`` watching which thread of a process calls fsync."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store import open_store
from cert_agent.verifier.store.sqlite import SqliteDatabase

NOW = dt.datetime(2026, 3, 14, 1, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


async def _largest_pause_while(work: asyncio.Future[None]) -> float:
    """The longest the event loop went without running a 10 ms timer while ``work`` ran."""
    largest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        largest, last = max(largest, now - last), now
    return largest


async def test_a_write_that_finds_the_file_locked_waits_on_the_thread_while_the_loop_runs(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "store.db")
    holder = subprocess.Popen(  # another process holds the write lock for a second, then lets go
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(1.0)\ndb.execute('COMMIT')\n",
            str(tmp_path / "store.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        write = asyncio.ensure_future(store.add_challenge("bm9uY2U=", LATER))
        pause = await _largest_pause_while(write)
        await write
        assert time.monotonic() - started >= 0.5  # it waited for the lock ...
        assert pause < 0.25  # ... and not on the event loop
        assert await store.consume_challenge("bm9uY2U=", NOW)  # and the write is there
    finally:
        holder.wait(timeout=10)
        await store.close()


async def test_work_marked_slow_runs_on_the_stores_thread_and_a_login_statement_on_the_loop(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "store.db")
    database = store.database
    assert isinstance(database, SqliteDatabase)
    threads: list[int] = []

    def here() -> int:
        threads.append(threading.get_ident())
        return 0

    database._db.create_function("here", 0, here)  # white-box: SQL that says which thread runs it
    try:
        for _ in range(3):  # past the first write, which a new process makes on the thread
            await store.add_challenge("bm9uY2U=", LATER)
            await store.consume_challenge("bm9uY2U=", NOW)
        async with database.connection() as db:
            await db.fetchone("SELECT here()")
        async with database.transaction(slow=True) as db:
            await db.fetchone("SELECT here()")
        assert threads[0] == threading.get_ident()  # the loop's thread
        assert threads[1] != threading.get_ident()  # the store's thread
    finally:
        await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, datetime as dt, os, sys, threading
    from cert_agent.verifier.store import open_store, sqlite

    sqlite.CHECKPOINT_EVERY = 10  # many checkpoints, and the WAL's restart after each

    async def main() -> None:
        store = await open_store(sys.argv[1])
        later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        for n in range(200):
            await store.add_challenge(f"n{n}", later)
            await store.consume_challenge(f"n{n}", dt.datetime(2029, 1, 1, tzinfo=dt.UTC))
        wal = os.path.getsize(sys.argv[1] + "-wal")
        await store.close()
        print(wal, threading.get_native_id(), flush=True)

    asyncio.run(main())
    """
)


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-o", "/dev/null", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is missing or may not trace here (ptrace refused)")
def test_the_event_loop_never_syncs_the_database_files(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    watch = ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace)]
    result = subprocess.run(
        [*watch, sys.executable, "-c", _WRITER, str(tmp_path / "store.db")],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    wal_bytes, loop_thread = result.stdout.split()
    syncs = [line.split()[0] for line in trace.read_text().splitlines() if "sync(" in line]
    assert len(syncs) >= 10  # the checkpoints synced: what is watched is there
    assert loop_thread not in syncs
    # and the checkpoints kept up: the WAL started again after them (400 writes of a page or two
    # each would make it 5 MB), its restart being one of the syncs the thread made
    assert int(wal_bytes) < 1_000_000


async def test_a_failing_statement_is_store_unavailable_and_leaves_the_connection_to_the_next(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "store.db")
    try:
        with pytest.raises(StoreUnavailable):
            async with store.database.connection() as db:
                await db.execute("SELECT * FROM no_such_table")
        with pytest.raises(sqlite3.IntegrityError):  # an integrity error is left as the driver raised it
            async with store.database.connection() as db:
                await db.execute("INSERT INTO challenges VALUES (?, ?)", ("n", LATER))
                await db.execute("INSERT INTO challenges VALUES (?, ?)", ("n", LATER))
        await asyncio.wait_for(store.add_challenge("after", LATER), timeout=5)  # the lock was let go
        assert await store.consume_challenge("after", NOW)
    finally:
        await store.close()
