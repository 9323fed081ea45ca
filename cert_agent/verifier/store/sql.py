"""``Store`` in SQL, written once for SQLite and PostgreSQL (``database`` adapts it).

A write of one statement runs on ``connection()`` (each statement is its own transaction, so it
is atomic, and costs one round trip); several statements that must hold together run in
``transaction()``.

Nothing here ever holds a PIN; SMS codes are kept as salted hashes (inside a login attempt's
state). Every check that must hold across requests, and across verifier instances on one
PostgreSQL, is one statement or one transaction: a challenge is deleted as it is consumed, a
failure count is incremented and read in one statement, an SMS send is checked against its
limits and recorded under one lock.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cert_agent.verifier.store.database import Database, Query, Row
from cert_agent.verifier.store.records import (
    ROLES,
    Agreement,
    App,
    AuditEntry,
    AuditEvent,
    CrossRegionIdentity,
    Enterprise,
    LoginAttempt,
    Parties,
    Person,
    ScanOutcome,
    ScanRequest,
    Session,
    SmsLimits,
)
from cert_agent.verifier.store.schema import MIGRATIONS, render
from cert_agent.verifier.store.signals import CHANNEL, Signals


def _moment(value: dt.datetime | str) -> dt.datetime:
    """A stored time: PostgreSQL returns a datetime, SQLite the ISO text it was given."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _day(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


T = TypeVar("T")
INTEGRITY_INTERVAL = 30.0  # seconds between SQLite quick checks (health)
_INSERT_SESSION = (
    "INSERT INTO sessions (session_id, person_id, taxpayer_id, agency_id, created_at, expires_at, role, identity_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


_INSERT_AUDIT = "INSERT INTO audit (at, person_id, taxpayer_id, event, detail) VALUES (?, ?, ?, ?, ?)"


def _audit_row(e: AuditEvent) -> tuple[Any, ...]:
    return (e.at, e.person_id, e.taxpayer_id, e.event, e.detail)


def _session_row(session: Session, now: dt.datetime) -> tuple[Any, ...]:
    return (
        session.session_id,
        session.person_id,
        session.taxpayer_id,
        session.agency_id,
        now,
        session.expires_at,
        session.role,
        session.identity_id,
    )


def _enterprise(row: Any) -> Enterprise:
    return Enterprise(
        row["taxpayer_id"], row["name"], bool(row["is_agency"]), row["tax_authority"], bool(row.get("cross_region"))
    )


def _person(row: Any) -> Person:
    others = tuple(phone for phone in row["other_phones"].split(",") if phone)
    return Person(row["person_id"], row["name"], row["id_number"], row["phone"], others)


# an enterprise, and whether it has 特定主体 (so that most logins need no second statement for them)
_ENTERPRISE = (
    "SELECT e.*, EXISTS (SELECT 1 FROM cross_region_identities c WHERE c.taxpayer_id = e.taxpayer_id) "
    "AS cross_region FROM enterprises e WHERE e.taxpayer_id = ?"
)


_PERSON = "SELECT * FROM persons WHERE person_id = ?"
_FAILURES = "SELECT method, count FROM failures WHERE account = ? AND day = ?"
_RESET_FAILURES = "DELETE FROM failures WHERE account = ?"
_PEOPLE = (  # ordered as the roles' key is (no sort)
    "SELECT p.*, r.role FROM roles r JOIN persons p USING (person_id) WHERE r.taxpayer_id = ? ORDER BY r.person_id"
)


_ATTEMPT = "SELECT * FROM login_attempts WHERE attempt_id = ?"


def _live_attempt(row: Row | None, now: dt.datetime) -> LoginAttempt | None:
    """The attempt in ``row``, unless there is none or it has expired."""
    if row is None or _moment(row["expires_at"]) <= now:
        return None
    return LoginAttempt.from_state(row["attempt_id"], row["state"], _moment(row["expires_at"]))


def _person_or_none(rows: list[Row]) -> Person | None:
    return _person(rows[0]) if rows else None


def _parties_queries(person_id: str, taxpayer_id: str, agency_id: str | None) -> list[Query]:
    """What ``_parties`` reads: the person, the enterprise, and the agency if there is one."""
    queries: list[Query] = [(_PERSON, (person_id,)), (_ENTERPRISE, (taxpayer_id,))]
    return [*queries, (_ENTERPRISE, (agency_id,))] if agency_id else queries


def _parties(rows: list[list[Row]]) -> Parties:
    person = _person_or_none(rows[0])
    enterprise = _enterprise(rows[1][0]) if rows[1] else None
    agency = _enterprise(rows[2][0]) if len(rows) > 2 and rows[2] else None
    return person, enterprise, agency


def _sms_windows(attempt_id: str, person_id: str, phone: str, limits: SmsLimits) -> list[tuple[str, str, int, int]]:
    """Each SMS send limit as (column, value, seconds, n): at most n sends with that value in
    the last so many seconds (the resend interval: one per attempt and per person)."""
    keys = [("attempt_id", attempt_id), ("person_id", person_id), ("phone", phone)]
    counted = [limits.per_attempt, limits.per_person, limits.per_phone]
    windows = [(column, value, limits.interval, 1) for column, value in keys[:2] if limits.interval > 0]
    return windows + [
        (column, value, limit.seconds, limit.count) for (column, value), limit in zip(keys, counted, strict=True)
    ]


def _with_roles(rows: list[Any], key: str, record: Callable[[Any], T]) -> list[tuple[T, list[str]]]:
    """Rows of (a record, one role) as each record with all its roles (in ROLES order)."""
    grouped: dict[str, tuple[T, list[str]]] = {}
    for row in rows:
        grouped.setdefault(row[key], (record(row), []))[1].append(row["role"])
    for _, roles in grouped.values():
        roles.sort(key=ROLES.index)
    return list(grouped.values())


def _failures(rows: list[Any]) -> dict[str, int]:
    return {row["method"]: int(row["count"]) for row in rows}


def _people(rows: list[Any]) -> list[tuple[Person, list[str]]]:
    """Each person of an enterprise, with their roles there."""
    return _with_roles(rows, "person_id", _person)


class SqlStore:
    """Every interface of ``interfaces`` over one ``Database``. Open it with ``open_store``."""

    def __init__(self, database: Database, *, integrity_interval: float = INTEGRITY_INTERVAL) -> None:
        self.database = database
        self._integrity_interval = integrity_interval
        self._integrity: tuple[float, str] | None = None  # (when, verdict) of the last quick check
        self.signals = Signals()

    async def migrate(self) -> int:
        """Apply the migrations this database lacks, in one transaction (several instances
        starting at once wait for each other); the schema version now."""
        async with self.database.transaction(slow=True) as db:
            await db.lock("migrate")
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await db.fetchone("SELECT version FROM schema_version")
            version = int(row["version"]) if row else 0
            if row is None:
                await db.execute("INSERT INTO schema_version VALUES (0)")
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in render(migration, self.database.dialect):
                    await db.execute(statement)
                await db.execute("UPDATE schema_version SET version = ?", (number,))
        return len(MIGRATIONS)

    async def ping(self) -> None:
        """A trivial read: StoreUnavailable when the database cannot be used."""
        async with self.database.connection() as db:
            await db.fetchone("SELECT version FROM schema_version")

    async def integrity(self) -> str:
        """ "ok", or "corrupt" when SQLite's quick_check finds damage (a file overwritten under
        the running service). Its cost grows with the file, so it runs at most once every
        ``integrity_interval`` seconds however often health is asked. PostgreSQL checks its
        own pages as it reads them: "ok" whenever it answers."""
        from cert_agent.verifier.store.sqlite import SqliteDatabase

        if not isinstance(self.database, SqliteDatabase):
            return "ok"
        now = time.monotonic()
        if self._integrity is not None and now - self._integrity[0] < self._integrity_interval:
            return self._integrity[1]
        verdict = "ok" if await self.database.quick_check() else "corrupt"
        self._integrity = (now, verdict)
        return verdict

    async def close(self) -> None:
        await self.database.close()

    # --- the domain -----------------------------------------------------------------------------

    async def import_all(self, records: dict[str, list[Any]]) -> None:
        """Enterprises, persons, roles and agreements in one transaction: all or nothing. A
        record that exists already is updated in place (rows that refer to it stay)."""
        async with self.database.transaction(slow=True) as db:
            for e in records.get("enterprises", []):
                await db.execute(
                    "INSERT INTO enterprises (taxpayer_id, name, is_agency, tax_authority) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(taxpayer_id) DO UPDATE SET "
                    "name = excluded.name, is_agency = excluded.is_agency, tax_authority = excluded.tax_authority",
                    (e.taxpayer_id, e.name, bool(e.is_agency), e.tax_authority),
                )
            for c in records.get("crossRegion", []):
                await db.execute(
                    "INSERT INTO cross_region_identities VALUES (?, ?, ?, ?, ?) ON CONFLICT(identity_id) DO UPDATE SET "
                    "taxpayer_id = excluded.taxpayer_id, kind = excluded.kind, name = excluded.name, "
                    "tax_authority = excluded.tax_authority",
                    (c.identity_id, c.taxpayer_id, c.kind, c.name, c.tax_authority),
                )
            for p in records.get("persons", []):
                await db.execute(
                    "INSERT INTO persons (person_id, name, id_number, phone, other_phones) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(person_id) DO UPDATE SET name = excluded.name, id_number = excluded.id_number, "
                    "phone = excluded.phone, other_phones = excluded.other_phones",
                    (p.person_id, p.name, p.id_number, p.phone, ",".join(p.other_phones)),
                )
            for taxpayer_id, person_id, role in records.get("roles", []):
                await db.execute(
                    "INSERT INTO roles VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (taxpayer_id, person_id, role)
                )
            for a in records.get("agreements", []):
                await db.execute(
                    "INSERT INTO agreements VALUES (?, ?, ?, ?, ?) ON CONFLICT(agency_id, client_id) DO UPDATE SET "
                    "valid_from = excluded.valid_from, valid_to = excluded.valid_to, status = excluded.status",
                    (a.agency_id, a.client_id, a.valid_from, a.valid_to, a.status),
                )

    async def enterprise(self, taxpayer_id: str) -> Enterprise | None:
        async with self.database.connection() as db:
            row = await db.fetchone(_ENTERPRISE, (taxpayer_id,))
        return _enterprise(row) if row else None

    async def identities_of(self, taxpayer_id: str) -> list[CrossRegionIdentity]:
        async with self.database.connection() as db:
            rows = await db.fetchall(
                "SELECT * FROM cross_region_identities WHERE taxpayer_id = ? ORDER BY identity_id", (taxpayer_id,)
            )
        return [
            CrossRegionIdentity(r["identity_id"], r["taxpayer_id"], r["kind"], r["name"], r["tax_authority"])
            for r in rows
        ]

    async def links_of(self, person_id: str) -> list[tuple[Enterprise, list[str]]]:
        """Every enterprise the person is linked to, with their roles there (in ROLES order)."""
        async with self.database.connection() as db:
            rows = await db.fetchall(
                "SELECT e.*, r.role FROM roles r JOIN enterprises e USING (taxpayer_id) WHERE r.person_id = ? "
                "ORDER BY e.taxpayer_id",
                (person_id,),
            )
        return _with_roles(rows, "taxpayer_id", _enterprise)

    async def person(self, person_id: str) -> Person | None:
        async with self.database.connection() as db:
            row = await db.fetchone(_PERSON, (person_id,))
        return _person(row) if row else None

    async def people_of(self, taxpayer_id: str) -> list[tuple[Person, list[str]]]:
        async with self.database.connection() as db:
            rows = await db.fetchall(_PEOPLE, (taxpayer_id,))
        return _people(rows)

    async def enterprise_and_people(self, taxpayer_id: str) -> tuple[Enterprise | None, list[tuple[Person, list[str]]]]:
        """``enterprise`` and ``people_of`` together (one round trip)."""
        async with self.database.connection() as db:
            enterprise, people = await db.fetch_each([(_ENTERPRISE, (taxpayer_id,)), (_PEOPLE, (taxpayer_id,))])
        return (_enterprise(enterprise[0]) if enterprise else None), _people(people)

    async def parties(self, person_id: str, taxpayer_id: str, agency_id: str | None) -> Parties:
        """A session's person, enterprise and agency (if any), in one round trip."""
        async with self.database.connection() as db:
            rows = await db.fetch_each(_parties_queries(person_id, taxpayer_id, agency_id))
        return _parties(rows)

    async def agreements_of(self, agency_id: str) -> list[Agreement]:
        async with self.database.connection() as db:
            rows = await db.fetchall("SELECT * FROM agreements WHERE agency_id = ? ORDER BY client_id", (agency_id,))
        return [
            Agreement(r["agency_id"], r["client_id"], _day(r["valid_from"]), _day(r["valid_to"]), r["status"])
            for r in rows
        ]

    # --- challenges ---------------------------------------------------------------------------

    async def add_challenge(self, nonce: str, expires_at: dt.datetime) -> None:
        async with self.database.connection() as db:
            await db.execute("INSERT INTO challenges VALUES (?, ?)", (nonce, expires_at))

    async def consume_challenge(self, nonce: str, now: dt.datetime) -> bool:
        """True exactly once for an issued, unexpired nonce: the row goes in the same statement,
        so two instances cannot both consume it."""
        async with self.database.connection() as db:
            row = await db.fetchone("DELETE FROM challenges WHERE nonce = ? RETURNING expires_at", (nonce,))
        return row is not None and _moment(row["expires_at"]) > now

    # --- failure counters -----------------------------------------------------------------------

    async def record_failure(self, account: str, method: str, day: str) -> int:
        """Count one more consecutive failure on ``day`` (a new day starts from one) and return
        the count, in one statement: parallel failures each see their own number."""
        async with self.database.connection() as db:
            row = await db.fetchone(
                "INSERT INTO failures VALUES (?, ?, ?, 1) ON CONFLICT(account, method) DO UPDATE SET "
                "count = CASE WHEN failures.day = excluded.day THEN failures.count + 1 ELSE 1 END, "
                "day = excluded.day RETURNING count",
                (account, method, day),
            )
        assert row is not None  # an upsert with RETURNING always returns its row
        return int(row["count"])

    async def failures_by_method(self, account: str, day: str) -> dict[str, int]:
        """Every method's consecutive failures today, in one statement."""
        async with self.database.connection() as db:
            rows = await db.fetchall(_FAILURES, (account, day))
        return _failures(rows)

    async def reset_all_failures(self, account: str) -> None:
        """A successful login: every method's count starts again."""
        async with self.database.connection() as db:
            await db.execute(_RESET_FAILURES, (account,))

    # --- login attempts and sessions ----------------------------------------------------------

    async def save_attempt(self, attempt: LoginAttempt) -> None:
        async with self.database.connection() as db:
            await db.execute(
                "INSERT INTO login_attempts VALUES (?, ?, ?)",
                (attempt.attempt_id, attempt.state_json(), attempt.expires_at),
            )

    async def update_attempt(self, attempt: LoginAttempt, audit: AuditEvent | None = None) -> None:
        """The next step of a login attempt; its expiry stays where it was set. ``audit``: an
        entry for the audit log, written after it in the same round trip."""
        state = (attempt.state_json(), attempt.attempt_id)
        update = ("UPDATE login_attempts SET state = ? WHERE attempt_id = ?", state)
        async with self.database.connection() as db:
            await db.execute_each([update] + ([(_INSERT_AUDIT, _audit_row(audit))] if audit else []))

    async def record_sms_send(
        self, attempt_id: str, person_id: str, phone: str, now: dt.datetime, limits: SmsLimits
    ) -> int:
        """Record one SMS send if every limit allows it and return 0; otherwise record nothing
        and return the seconds until one would. Checked and recorded under one lock, in one
        statement (so BEGIN, the lock, the send and COMMIT are one round trip on PostgreSQL):
        parallel requests (on any instance) cannot pass a limit together."""
        windows = _sms_windows(attempt_id, person_id, phone, limits)
        nth_latest = [
            f"(SELECT at FROM sms_sends WHERE {column} = ? AND at > ? ORDER BY at DESC LIMIT 1 OFFSET ?)"
            for column, _, _, _ in windows
        ]
        params = [p for _, value, seconds, n in windows for p in (value, now - dt.timedelta(seconds=seconds), n - 1)]
        async with self.database.transaction() as db:
            # in this order always, so two sends never wait for each other in a circle
            await db.lock("sms:attempt:" + attempt_id, "sms:person:" + person_id, "sms:phone:" + phone)
            # a window holding n sends already is full until its n-th latest send leaves it
            sent = await db.write(
                "INSERT INTO sms_sends (at, attempt_id, person_id, phone) SELECT ?, ?, ?, ? WHERE "
                + " AND ".join(f"{latest} IS NULL" for latest in nth_latest),
                [now, attempt_id, person_id, phone, *params],
            )
        if sent.rowcount == 1:
            return 0
        # Refused: the wait is read again after the lock (what a client is told; a window that
        # has freed since says 1 s).
        async with self.database.connection() as db:
            row = await db.fetchone("SELECT " + ", ".join(f"{q} AS w{i}" for i, q in enumerate(nth_latest)), params)
        assert row is not None  # a SELECT without FROM returns one row
        waits = [
            _moment(row[f"w{i}"]) + dt.timedelta(seconds=seconds) - now
            for i, (_, _, seconds, _) in enumerate(windows)
            if row[f"w{i}"] is not None
        ]
        return max(1, math.ceil(max(waits).total_seconds())) if waits else 1

    # --- 扫码验证 requests and the apps that answer them ----------------------------------------

    async def add_scan_request(self, request: ScanRequest) -> None:
        async with self.database.connection() as db:
            await db.execute(
                "INSERT INTO scan_requests (request_hash, attempt_id, person_id, expires_at) VALUES (?, ?, ?, ?)",
                (request.request_hash, request.attempt_id, request.person_id, request.expires_at),
            )

    async def scan_request(self, request_hash: str) -> ScanRequest | None:
        async with self.database.connection() as db:
            row = await db.fetchone("SELECT * FROM scan_requests WHERE request_hash = ?", (request_hash,))
        if row is None:
            return None
        outcome = ScanOutcome(row["outcome"]) if row["outcome"] else None
        return ScanRequest(
            row["request_hash"], row["attempt_id"], row["person_id"], _moment(row["expires_at"]), outcome, row["app_id"]
        )

    async def answer_scan_request(self, request_hash: str, outcome: ScanOutcome, app_id: str, now: dt.datetime) -> bool:
        """Record the one answer to a live request, in one statement (of two apps or two
        instances answering at once, one wins), and wake whoever waits for it, on any instance."""
        async with self.database.connection() as db:
            changed = await db.execute(
                "UPDATE scan_requests SET outcome = ?, answered_at = ?, app_id = ? "
                "WHERE request_hash = ? AND outcome IS NULL AND expires_at > ?",
                (outcome.value, now, app_id, request_hash, now),
            )
        if changed == 1:
            self.signals.wake(request_hash)
            await self.database.notify(CHANNEL, request_hash)
        return changed == 1

    async def wait_for_scan_answer(self, request_hash: str, timeout: float) -> None:
        """Until the request may have been answered (woken here or by another instance), or
        ``timeout`` seconds: the caller reads the request again either way."""
        await self.database.listen(CHANNEL, self.signals.wake)
        await self.signals.wait(request_hash, min(timeout, self.database.recheck_interval))

    async def register_app(self, app: App, now: dt.datetime) -> None:
        async with self.database.connection() as db:
            await db.execute(
                "INSERT INTO apps (app_id, name, secret_sha256, created_at) VALUES (?, ?, ?, ?)",
                (app.app_id, app.name, app.secret_sha256, now),
            )

    async def app(self, app_id: str) -> App | None:
        async with self.database.connection() as db:
            row = await db.fetchone("SELECT * FROM apps WHERE app_id = ?", (app_id,))
        return App(row["app_id"], row["name"], row["secret_sha256"], bool(row["revoked"])) if row else None

    async def apps(self) -> list[App]:
        async with self.database.connection() as db:
            rows = await db.fetchall("SELECT * FROM apps ORDER BY created_at, app_id")
        return [App(r["app_id"], r["name"], r["secret_sha256"], bool(r["revoked"])) for r in rows]

    async def revoke_app(self, app_id: str) -> bool:
        async with self.database.connection() as db:
            return await db.execute("UPDATE apps SET revoked = ? WHERE app_id = ?", (True, app_id)) == 1

    async def attempt(self, attempt_id: str, now: dt.datetime) -> LoginAttempt | None:
        async with self.database.connection() as db:
            row = await db.fetchone(_ATTEMPT, (attempt_id,))
        return _live_attempt(row, now)

    async def attempt_and_person(
        self, attempt_id: str, now: dt.datetime, person_id: str, day: str
    ) -> tuple[LoginAttempt | None, Person | None, dict[str, int]]:
        """``attempt``, the person and their ``failures_by_method`` (their account is their id)
        in one round trip; the person is read whether or not the attempt lists them."""
        queries = [(_ATTEMPT, (attempt_id,)), (_PERSON, (person_id,)), (_FAILURES, (person_id, day))]
        async with self.database.connection() as db:
            attempt, person, failures = await db.fetch_each(queries)
        return _live_attempt(attempt[0] if attempt else None, now), _person_or_none(person), _failures(failures)

    async def drop_attempt(self, attempt_id: str, *, reset_failures_of: str | None = None) -> bool:
        """Delete a login attempt; True if this call deleted it (so one of two parallel
        requests finishing the same attempt wins). ``reset_failures_of``: the person whose second
        factor just passed, whose failures ``reset_all_failures`` then clears in the same round
        trip (they passed whichever request wins)."""
        drop = ("DELETE FROM login_attempts WHERE attempt_id = ?", (attempt_id,))
        reset = [(_RESET_FAILURES, (reset_failures_of,))] if reset_failures_of is not None else []
        async with self.database.connection() as db:
            return (await db.execute_each([drop, *reset]))[0] == 1

    async def create_session(self, session: Session, now: dt.datetime, audit: AuditEvent | None = None) -> Parties:
        """The session begins; ``audit``: an entry for the audit log, written after it. Returns
        its ``parties``, read after the writes in the same round trip."""
        writes: list[Query] = [(_INSERT_SESSION, _session_row(session, now))]
        writes += [(_INSERT_AUDIT, _audit_row(audit))] if audit else []
        reads = _parties_queries(session.person_id, session.taxpayer_id, session.agency_id)
        async with self.database.connection() as db:
            rows = await db.fetch_after(writes, reads)
        return _parties(rows)

    async def replace_session(self, old_id: str, session: Session, now: dt.datetime) -> bool:
        """The session ``old_id`` ends and ``session`` (a new id) begins, in one transaction;
        False (nothing changed) when ``old_id`` had ended already."""
        async with self.database.transaction() as db:
            if await db.execute("DELETE FROM sessions WHERE session_id = ?", (old_id,)) != 1:
                return False
            await db.write(_INSERT_SESSION, _session_row(session, now))
        return True

    async def session(self, session_id: str, now: dt.datetime) -> Session | None:
        async with self.database.connection() as db:
            row = await db.fetchone("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        if row is None or _moment(row["expires_at"]) <= now:
            return None
        return Session(
            row["session_id"],
            row["person_id"],
            row["taxpayer_id"],
            row["agency_id"],
            _moment(row["expires_at"]),
            row["role"],
            row["identity_id"],
        )

    async def end_session(self, session_id: str) -> None:
        async with self.database.connection() as db:
            await db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    # --- audit ----------------------------------------------------------------------------------

    async def audit(
        self, at: dt.datetime, person_id: str | None, taxpayer_id: str | None, event: str, detail: str
    ) -> None:
        async with self.database.connection() as db:
            await db.execute(_INSERT_AUDIT, (at, person_id, taxpayer_id, event, detail))

    async def history(self, person_id: str, include_hidden: bool = False) -> list[AuditEntry]:
        query = "SELECT * FROM audit WHERE person_id = ?" + ("" if include_hidden else " AND hidden = ?")
        params: tuple[Any, ...] = (person_id,) if include_hidden else (person_id, False)
        async with self.database.connection() as db:
            rows = await db.fetchall(query + " ORDER BY entry_id", params)
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

    async def hide_entry(self, person_id: str, entry_id: int) -> bool:
        """清除记录: the entry leaves the user's history; the audit trail keeps it."""
        async with self.database.connection() as db:
            changed = await db.execute(
                "UPDATE audit SET hidden = ? WHERE entry_id = ? AND person_id = ?", (True, entry_id, person_id)
            )
        return changed == 1

    # --- bounded growth -------------------------------------------------------------------------

    async def purge(self, now: dt.datetime, keep_sends_since: dt.datetime, today: str) -> dict[str, int]:
        """Delete what can no longer be used: expired challenges, login attempts and sessions,
        SMS sends older than the longest send limit, failure counts of past days. The audit
        log is kept. Safe to run on several instances at once. The rows deleted, per table."""
        deleted: dict[str, int] = {}
        async with self.database.transaction(slow=True) as db:
            for table in ("challenges", "login_attempts", "sessions"):
                deleted[table] = await db.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))
            # kept a while past their expiry, so that an app's late or repeated answer is told so
            deleted["scan_requests"] = await db.execute(
                "DELETE FROM scan_requests WHERE expires_at <= ?", (now - dt.timedelta(hours=1),)
            )
            deleted["sms_sends"] = await db.execute("DELETE FROM sms_sends WHERE at < ?", (keep_sends_since,))
            deleted["failures"] = await db.execute("DELETE FROM failures WHERE day < ?", (today,))
        return deleted
