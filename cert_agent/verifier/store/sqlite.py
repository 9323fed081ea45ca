"""``Store`` on one SQLite file (WAL): schema migrations and every interface of ``interfaces``.

Times are stored as UTC ISO-8601 text. Nothing here ever holds a PIN; SMS codes are kept as
salted hashes. Each call holds a lock for the few statements it runs (all local and short); a
database that is locked too long, full or broken becomes ``StoreUnavailable``.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.store.records import (
    ROLES,
    Agreement,
    AuditEntry,
    Enterprise,
    LoginAttempt,
    Person,
    Session,
    SmsLimits,
)

MIGRATIONS: list[str] = [
    # 1: the domain, challenges, counters, sessions, audit
    """
    CREATE TABLE enterprises (
        taxpayer_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        is_agency INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE persons (
        person_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        id_number TEXT NOT NULL UNIQUE,
        phone TEXT NOT NULL
    );
    CREATE TABLE roles (
        taxpayer_id TEXT NOT NULL REFERENCES enterprises(taxpayer_id),
        person_id TEXT NOT NULL REFERENCES persons(person_id),
        role TEXT NOT NULL CHECK (role IN ('法定代表人', '财务负责人', '办税员', '开票员')),
        PRIMARY KEY (taxpayer_id, person_id, role)
    );
    CREATE TABLE agreements (
        agency_id TEXT NOT NULL REFERENCES enterprises(taxpayer_id),
        client_id TEXT NOT NULL REFERENCES enterprises(taxpayer_id),
        valid_from TEXT NOT NULL,
        valid_to TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
        PRIMARY KEY (agency_id, client_id)
    );
    CREATE TABLE challenges (
        nonce TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE failures (
        account TEXT NOT NULL,
        method TEXT NOT NULL,
        day TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (account, method)
    );
    CREATE TABLE login_attempts (
        attempt_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        person_id TEXT NOT NULL,
        taxpayer_id TEXT NOT NULL,
        agency_id TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE audit (
        entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        person_id TEXT,
        taxpayer_id TEXT,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        hidden INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX audit_person ON audit(person_id);
    """,
    # 2: every SMS code sent, for the send limits (per login attempt, per person, per phone)
    """
    CREATE TABLE sms_sends (
        send_id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        attempt_id TEXT NOT NULL,
        person_id TEXT NOT NULL,
        phone TEXT NOT NULL
    );
    CREATE INDEX sms_sends_attempt ON sms_sends(attempt_id, at);
    CREATE INDEX sms_sends_person ON sms_sends(person_id, at);
    CREATE INDEX sms_sends_phone ON sms_sends(phone, at);
    """,
]


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.DatabaseError as exc:  # locked past busy_timeout, disk full, I/O error, corrupt file
        raise StoreUnavailable(type(exc).__name__ + ": " + str(exc)) from None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class SqliteStore:
    """``Store`` on one SQLite file. Safe to share between the event loop's callers: every
    call holds a lock for the few statements it runs (all local and short)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._migrate()

    def ping(self) -> None:
        """A trivial read: StoreUnavailable when the file cannot be read (locked, gone, broken)."""
        with self._reading() as db:
            db.execute("SELECT version FROM schema_version").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for a read; a database that is locked too long, full, or broken
        becomes StoreUnavailable (HTTP 503), never an unexplained 500."""
        with self._lock, _store_errors():
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or none of it (a failed COMMIT rolls back)."""
        with self._lock, _store_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row["version"] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (number,))

    # --- the domain -----------------------------------------------------------------------------

    def import_all(self, records: dict[str, list[Any]]) -> None:
        """Enterprises, persons, roles and agreements in one transaction: all or nothing. A
        record that exists already is updated in place (rows that refer to it stay)."""
        with self._transaction() as db:
            for e in records.get("enterprises", []):
                db.execute(
                    "INSERT INTO enterprises VALUES (?, ?, ?) ON CONFLICT(taxpayer_id) DO UPDATE SET "
                    "name = excluded.name, is_agency = excluded.is_agency",
                    (e.taxpayer_id, e.name, int(e.is_agency)),
                )
            for p in records.get("persons", []):
                db.execute(
                    "INSERT INTO persons VALUES (?, ?, ?, ?) ON CONFLICT(person_id) DO UPDATE SET "
                    "name = excluded.name, id_number = excluded.id_number, phone = excluded.phone",
                    (p.person_id, p.name, p.id_number, p.phone),
                )
            for taxpayer_id, person_id, role in records.get("roles", []):
                db.execute("INSERT OR IGNORE INTO roles VALUES (?, ?, ?)", (taxpayer_id, person_id, role))
            for a in records.get("agreements", []):
                db.execute(
                    "INSERT INTO agreements VALUES (?, ?, ?, ?, ?) ON CONFLICT(agency_id, client_id) DO UPDATE SET "
                    "valid_from = excluded.valid_from, valid_to = excluded.valid_to, status = excluded.status",
                    (a.agency_id, a.client_id, a.valid_from.isoformat(), a.valid_to.isoformat(), a.status),
                )

    def enterprise(self, taxpayer_id: str) -> Enterprise | None:
        with self._reading() as db:
            row = db.execute("SELECT * FROM enterprises WHERE taxpayer_id = ?", (taxpayer_id,)).fetchone()
        return Enterprise(row["taxpayer_id"], row["name"], bool(row["is_agency"])) if row else None

    def person(self, person_id: str) -> Person | None:
        with self._reading() as db:
            row = db.execute("SELECT * FROM persons WHERE person_id = ?", (person_id,)).fetchone()
        return Person(row["person_id"], row["name"], row["id_number"], row["phone"]) if row else None

    def people_of(self, taxpayer_id: str) -> list[tuple[Person, list[str]]]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT p.*, r.role FROM roles r JOIN persons p USING (person_id) WHERE r.taxpayer_id = ? "
                "ORDER BY p.person_id",
                (taxpayer_id,),
            ).fetchall()
        people: dict[str, tuple[Person, list[str]]] = {}
        for row in rows:
            entry = people.setdefault(
                row["person_id"], (Person(row["person_id"], row["name"], row["id_number"], row["phone"]), [])
            )
            entry[1].append(row["role"])
        for _, roles in people.values():
            roles.sort(key=ROLES.index)
        return list(people.values())

    def agreements_of(self, agency_id: str) -> list[Agreement]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT * FROM agreements WHERE agency_id = ? ORDER BY client_id", (agency_id,)
            ).fetchall()
        return [
            Agreement(
                r["agency_id"],
                r["client_id"],
                dt.date.fromisoformat(r["valid_from"]),
                dt.date.fromisoformat(r["valid_to"]),
                r["status"],
            )
            for r in rows
        ]

    # --- challenges ---------------------------------------------------------------------------

    def add_challenge(self, nonce: str, expires_at: dt.datetime) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO challenges VALUES (?, ?)", (nonce, _iso(expires_at)))

    def consume_challenge(self, nonce: str, now: dt.datetime) -> bool:
        """True exactly once for an issued, unexpired nonce: the row goes in the same statement."""
        with self._transaction() as db:
            row = db.execute("DELETE FROM challenges WHERE nonce = ? RETURNING expires_at", (nonce,)).fetchone()
            db.execute("DELETE FROM challenges WHERE expires_at < ?", (_iso(now),))  # tidy up
        return row is not None and _moment(row["expires_at"]) > now

    # --- failure counters -----------------------------------------------------------------------

    def failures(self, account: str, method: str, day: str) -> int:
        with self._reading() as db:
            row = db.execute(
                "SELECT count, day FROM failures WHERE account = ? AND method = ?", (account, method)
            ).fetchone()
        return int(row["count"]) if row and row["day"] == day else 0

    def record_failure(self, account: str, method: str, day: str) -> int:
        """Count one more consecutive failure on ``day``; a new day starts from one."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO failures VALUES (?, ?, ?, 1) ON CONFLICT(account, method) DO UPDATE SET "
                "count = CASE WHEN day = excluded.day THEN count + 1 ELSE 1 END, day = excluded.day",
                (account, method, day),
            )
            row = db.execute(
                "SELECT count FROM failures WHERE account = ? AND method = ?", (account, method)
            ).fetchone()
        return int(row["count"])

    def reset_failures(self, account: str, method: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM failures WHERE account = ? AND method = ?", (account, method))

    # --- login attempts and sessions ----------------------------------------------------------

    def save_attempt(self, attempt: LoginAttempt) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO login_attempts VALUES (?, ?, ?)",
                (attempt.attempt_id, attempt.state_json(), _iso(attempt.expires_at)),
            )

    def update_attempt(self, attempt: LoginAttempt) -> None:
        """The next step of a login attempt; its expiry stays where it was set."""
        with self._transaction() as db:
            db.execute(
                "UPDATE login_attempts SET state = ? WHERE attempt_id = ?", (attempt.state_json(), attempt.attempt_id)
            )

    def record_sms_send(self, attempt_id: str, person_id: str, phone: str, now: dt.datetime, limits: SmsLimits) -> int:
        """Record one SMS send if every limit allows it and return 0; otherwise record nothing
        and return the seconds until one would. Checked and recorded in one transaction, so
        parallel requests cannot pass a limit together."""
        with self._transaction() as db:

            def sends(column: str, value: str, seconds: int) -> list[dt.datetime]:
                since = _iso(now - dt.timedelta(seconds=seconds))
                rows = db.execute(
                    f"SELECT at FROM sms_sends WHERE {column} = ? AND at > ? ORDER BY at", (value, since)
                ).fetchall()
                return [_moment(row["at"]) for row in rows]

            waits = []
            last = sends("attempt_id", attempt_id, limits.interval) + sends("person_id", person_id, limits.interval)
            if last:
                waits.append(max(last) + dt.timedelta(seconds=limits.interval) - now)
            for column, value, limit in (
                ("attempt_id", attempt_id, limits.per_attempt),
                ("person_id", person_id, limits.per_person),
                ("phone", phone, limits.per_phone),
            ):
                recent = sends(column, value, limit.seconds)
                if len(recent) >= limit.count:
                    waits.append(recent[len(recent) - limit.count] + dt.timedelta(seconds=limit.seconds) - now)
            if waits:
                return max(1, math.ceil(max(waits).total_seconds()))
            db.execute(
                "INSERT INTO sms_sends (at, attempt_id, person_id, phone) VALUES (?, ?, ?, ?)",
                (_iso(now), attempt_id, person_id, phone),
            )
        return 0

    def attempt(self, attempt_id: str, now: dt.datetime) -> LoginAttempt | None:
        with self._reading() as db:
            row = db.execute("SELECT * FROM login_attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
        if row is None or _moment(row["expires_at"]) <= now:
            return None
        return LoginAttempt.from_state(row["attempt_id"], row["state"], _moment(row["expires_at"]))

    def drop_attempt(self, attempt_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM login_attempts WHERE attempt_id = ?", (attempt_id,))

    def create_session(self, session: Session, now: dt.datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session.session_id,
                    session.person_id,
                    session.taxpayer_id,
                    session.agency_id,
                    _iso(now),
                    _iso(session.expires_at),
                ),
            )

    def session(self, session_id: str, now: dt.datetime) -> Session | None:
        with self._reading() as db:
            row = db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None or _moment(row["expires_at"]) <= now:
            return None
        return Session(
            row["session_id"], row["person_id"], row["taxpayer_id"], row["agency_id"], _moment(row["expires_at"])
        )

    def end_session(self, session_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    # --- audit ----------------------------------------------------------------------------------

    def audit(self, at: dt.datetime, person_id: str | None, taxpayer_id: str | None, event: str, detail: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO audit (at, person_id, taxpayer_id, event, detail) VALUES (?, ?, ?, ?, ?)",
                (_iso(at), person_id, taxpayer_id, event, detail),
            )

    def history(self, person_id: str, include_hidden: bool = False) -> list[AuditEntry]:
        query = "SELECT * FROM audit WHERE person_id = ?" + ("" if include_hidden else " AND hidden = 0")
        with self._reading() as db:
            rows = db.execute(query + " ORDER BY entry_id", (person_id,)).fetchall()
        return [
            AuditEntry(
                r["entry_id"],
                _moment(r["at"]),
                r["person_id"],
                r["taxpayer_id"],
                r["event"],
                r["detail"],
                bool(r["hidden"]),
            )
            for r in rows
        ]

    def hide_entry(self, person_id: str, entry_id: int) -> bool:
        """清除记录: the entry leaves the user's history; the audit trail keeps it."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE audit SET hidden = 1 WHERE entry_id = ? AND person_id = ?", (entry_id, person_id)
            ).rowcount
        return changed == 1
