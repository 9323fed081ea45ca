"""The store's contract, run on both databases: SQLite (a file) and PostgreSQL (a real server
from Debian's packages). Every check that must hold under parallel requests is tried with
parallel requests; on PostgreSQL they go over separate pooled connections, as several
instances' would."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from cert_agent.verifier.errors import StoreUnavailable
from cert_agent.verifier.importer import check_records
from cert_agent.verifier.store import MIGRATIONS, LoginAttempt, LoginKind, Session, SmsLimits, SqlStore, open_store
from cert_agent.verifier.store.records import App, AuditEvent, ScanOutcome, ScanRequest
from softhsm_fixtures.seed import verifier_records
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.postgres import PostgresServer
from tests.harness.verifier import row_counts

HAIRUN = TAXPAYERS["hairun"].taxpayer_id
NOW = dt.datetime(2026, 3, 14, 1, 0, tzinfo=dt.UTC)
DAY = "2026-03-14"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "store.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest_asyncio.fixture
async def store(location: str | Path) -> AsyncIterator[SqlStore]:
    opened = await open_store(location)
    await opened.import_all(check_records(verifier_records(NOW.date())))
    try:
        yield opened
    finally:
        await opened.close()


def attempt(attempt_id: str, expires_at: dt.datetime = NOW + dt.timedelta(minutes=10)) -> LoginAttempt:
    return LoginAttempt(attempt_id, LoginKind.ENTERPRISE, HAIRUN, "00" * 32, ("p-zhang",), expires_at)


async def test_opening_a_store_applies_every_migration_once_even_when_instances_start_together(
    location: str | Path,
) -> None:
    stores = await asyncio.gather(*(open_store(location) for _ in range(3)))
    try:
        for opened in stores:
            assert await opened.migrate() == len(MIGRATIONS)  # again: nothing left to apply
            async with opened.database.connection() as db:
                row = await db.fetchone("SELECT version FROM schema_version")
            assert row is not None and row["version"] == len(MIGRATIONS)
    finally:
        for opened in stores:
            await opened.close()


async def test_instances_opening_one_new_sqlite_file_together_all_open_it(tmp_path: Path) -> None:
    # SQLite refuses a journal-mode switch at once, without waiting, when another connection is
    # making the same switch: about one round in five failed here before the switch was retried
    for round_number in range(20):
        location = tmp_path / f"store-{round_number}.db"
        stores = await asyncio.gather(*(open_store(location) for _ in range(4)), return_exceptions=True)
        for opened in stores:  # all closed first: an open store's thread would keep pytest alive
            if isinstance(opened, SqlStore):
                await opened.close()
        assert all(isinstance(opened, SqlStore) for opened in stores), stores


async def test_a_challenge_is_consumed_exactly_once_even_when_raced(store: SqlStore) -> None:
    await store.add_challenge("n-1", NOW + dt.timedelta(minutes=5))
    results = await asyncio.gather(*(store.consume_challenge("n-1", NOW) for _ in range(20)))
    assert results.count(True) == 1
    await store.add_challenge("n-old", NOW - dt.timedelta(seconds=1))
    assert not await store.consume_challenge("n-old", NOW)
    assert not await store.consume_challenge("never-issued", NOW)


async def test_parallel_failures_each_get_their_own_count_and_a_new_day_starts_over(store: SqlStore) -> None:
    counts = await asyncio.gather(*(store.record_failure("p-zhang", "certificate", DAY) for _ in range(12)))
    assert sorted(counts) == list(range(1, 13))
    assert await store.failures_by_method("p-zhang", DAY) == {"certificate": 12}
    assert await store.failures_by_method("p-zhang", "2026-03-15") == {}
    assert await store.record_failure("p-zhang", "certificate", "2026-03-15") == 1
    assert await store.record_failure("p-zhang", "scan", "2026-03-15") == 1  # each method counts apart
    assert await store.failures_by_method("p-zhang", "2026-03-15") == {"certificate": 1, "scan": 1}
    await store.reset_all_failures("p-zhang")
    assert await store.failures_by_method("p-zhang", "2026-03-15") == {}


async def test_parallel_sms_sends_pass_the_limits_once(store: SqlStore) -> None:
    waits = await asyncio.gather(
        *(store.record_sms_send("a-1", "p-zhang", "13800000001", NOW, SmsLimits()) for _ in range(30))
    )
    assert waits.count(0) == 1 and all(55 <= w <= 60 for w in waits if w)


async def test_attempts_move_through_their_steps_and_are_finished_once(store: SqlStore) -> None:
    await store.save_attempt(attempt("a-1"))
    loaded = await store.attempt("a-1", NOW)
    assert loaded == attempt("a-1")
    assert await store.attempt("a-1", NOW + dt.timedelta(minutes=11)) is None  # expired
    assert (await asyncio.gather(*(store.drop_attempt("a-1") for _ in range(5)))).count(True) == 1
    assert await store.attempt("a-1", NOW) is None


async def test_sessions_are_found_until_they_expire_or_end(store: SqlStore) -> None:
    session = Session("s-1", "p-zhang", HAIRUN, None, NOW + dt.timedelta(minutes=30))
    assert await store.create_session(session, NOW) == await store.parties("p-zhang", HAIRUN, None)
    assert await store.session("s-1", NOW) == session
    assert await store.session("s-1", NOW + dt.timedelta(minutes=31)) is None
    await store.end_session("s-1")
    assert await store.session("s-1", NOW) is None


async def test_a_change_and_its_audit_entry_are_written_together(store: SqlStore) -> None:
    await store.save_attempt(attempt("a-1"))
    begun = AuditEvent(NOW, "p-zhang", HAIRUN, "sms_sent", "138****0001")
    await store.update_attempt(replace(attempt("a-1"), persons=("p-zhang", "p-li")), begun)
    assert (await store.attempt("a-1", NOW)) == replace(attempt("a-1"), persons=("p-zhang", "p-li"))
    session = Session("s-1", "p-zhang", HAIRUN, None, NOW + dt.timedelta(minutes=30))
    await store.create_session(session, NOW, AuditEvent(NOW, "p-zhang", HAIRUN, "login_enterprise", ""))
    assert await store.session("s-1", NOW) == session
    assert [(e.event, e.detail) for e in await store.history("p-zhang")] == [
        ("sms_sent", "138****0001"),
        ("login_enterprise", ""),
    ]


async def test_a_session_of_an_agency_is_created_with_its_three_parties(store: SqlStore) -> None:
    agency_id = TAXPAYERS["xinda"].taxpayer_id
    session = Session("s-1", "p-zhang", HAIRUN, agency_id, NOW + dt.timedelta(minutes=30))
    assert await store.create_session(session, NOW) == await store.parties("p-zhang", HAIRUN, agency_id)


async def test_a_session_id_taken_fails_the_creation_and_writes_no_audit_entry(store: SqlStore) -> None:
    session = Session("s-1", "p-zhang", HAIRUN, None, NOW + dt.timedelta(minutes=30))
    await store.create_session(session, NOW)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await store.create_session(session, NOW, AuditEvent(NOW, "p-zhang", HAIRUN, "login_enterprise", ""))
    assert await store.history("p-zhang") == []
    assert await store.session("s-1", NOW) == session  # the first one stands


async def test_the_combined_reads_answer_as_the_single_reads_do(store: SqlStore) -> None:
    agency_id = TAXPAYERS["xinda"].taxpayer_id
    assert await store.enterprise_and_people(HAIRUN) == (await store.enterprise(HAIRUN), await store.people_of(HAIRUN))
    assert await store.enterprise_and_people("9" * 18) == (None, [])
    assert await store.parties("p-zhang", HAIRUN, None) == (
        await store.person("p-zhang"),
        await store.enterprise(HAIRUN),
        None,
    )
    await store.record_failure("p-zhang", "sms", DAY)
    await store.save_attempt(attempt("a-1"))
    assert await store.attempt_and_person("a-1", NOW, "p-zhang", DAY) == (
        await store.attempt("a-1", NOW),
        await store.person("p-zhang"),
        await store.failures_by_method("p-zhang", DAY),
    )
    later = NOW + dt.timedelta(minutes=11)  # the attempt expired: the person is still read
    assert await store.attempt_and_person("a-1", later, "p-zhang", DAY) == (
        None,
        await store.person("p-zhang"),
        await store.failures_by_method("p-zhang", DAY),
    )
    assert await store.attempt_and_person("a-none", NOW, "p-nobody", DAY) == (None, None, {})
    assert await store.parties("p-nobody", HAIRUN, agency_id) == (
        None,
        await store.enterprise(HAIRUN),
        await store.enterprise(agency_id),
    )


async def test_the_audit_log_keeps_order_and_hidden_entries(store: SqlStore) -> None:
    for minute, event in enumerate(["sms_sent", "login_enterprise", "logout"]):
        await store.audit(NOW + dt.timedelta(minutes=minute), "p-zhang", HAIRUN, event, "")
    entries = await store.history("p-zhang")
    assert [e.event for e in entries] == ["sms_sent", "login_enterprise", "logout"]
    assert [e.at for e in entries] == [NOW + dt.timedelta(minutes=m) for m in range(3)]
    assert await store.hide_entry("p-zhang", entries[0].entry_id)
    assert not await store.hide_entry("p-li", entries[1].entry_id)  # someone else's entry
    assert [e.event for e in await store.history("p-zhang")] == ["login_enterprise", "logout"]
    assert len(await store.history("p-zhang", include_hidden=True)) == 3


async def test_the_directory_reads_back_what_was_imported(store: SqlStore) -> None:
    agency = await store.enterprise(TAXPAYERS["xinda"].taxpayer_id)
    records = verifier_records(NOW.date())
    assert agency is not None and agency.is_agency
    agreements = await store.agreements_of(agency.taxpayer_id)
    assert len(agreements) == len([a for a in records["agreements"] if a["agencyId"] == agency.taxpayer_id])
    assert all(isinstance(a.valid_from, dt.date) for a in agreements)
    await store.import_all(check_records(records))  # again: updated in place, nothing doubled
    assert len(await store.agreements_of(agency.taxpayer_id)) == len(agreements)


async def test_a_purge_deletes_what_expired_and_keeps_the_audit(store: SqlStore) -> None:
    await store.add_challenge("n-old", NOW - dt.timedelta(seconds=1))
    await store.add_challenge("n-live", NOW + dt.timedelta(minutes=5))
    await store.save_attempt(attempt("a-old", NOW - dt.timedelta(seconds=1)))
    await store.save_attempt(attempt("a-live"))
    await store.create_session(Session("s-old", "p-zhang", "x", None, NOW - dt.timedelta(seconds=1)), NOW)
    await store.record_sms_send("a-old", "p-zhang", "138", NOW - dt.timedelta(days=2), SmsLimits())
    await store.record_failure("p-zhang", "certificate", "2026-03-13")
    await store.add_scan_request(ScanRequest("r-old", "a-old", "p-zhang", NOW - dt.timedelta(hours=2)))
    await store.add_scan_request(ScanRequest("r-late", "a-old", "p-zhang", NOW - dt.timedelta(minutes=1)))
    await store.audit(NOW, "p-zhang", "x", "logout", "")
    deleted = await store.purge(NOW, NOW - dt.timedelta(days=1), DAY)
    assert deleted == {
        "challenges": 1, "login_attempts": 1, "sessions": 1, "scan_requests": 1, "sms_sends": 1, "failures": 1
    }  # fmt: skip
    counts = await row_counts(store)
    assert counts == {
        "challenges": 1, "login_attempts": 1, "sessions": 0, "sms_sends": 0, "failures": 0,
        "scan_requests": 1,  # expired a minute ago: kept an hour, so that a late answer is told SCAN_EXPIRED
        "audit": 1,
    }  # fmt: skip


async def test_a_scan_request_is_answered_once_under_parallel_answers(store: SqlStore) -> None:
    await store.add_scan_request(ScanRequest("r-1", "a-1", "p-zhang", NOW + dt.timedelta(minutes=2)))
    answers = await asyncio.gather(
        *(store.answer_scan_request("r-1", ScanOutcome.VERIFIED, f"app-{i}", NOW) for i in range(8))
    )
    assert answers.count(True) == 1
    request = await store.scan_request("r-1")
    assert request is not None and request.outcome is ScanOutcome.VERIFIED
    await store.add_scan_request(ScanRequest("r-2", "a-1", "p-zhang", NOW - dt.timedelta(seconds=1)))
    assert not await store.answer_scan_request("r-2", ScanOutcome.VERIFIED, "app-1", NOW)  # expired


async def test_a_waiter_is_woken_by_the_answer_not_by_its_timeout(store: SqlStore) -> None:
    await store.add_scan_request(ScanRequest("r-w", "a-1", "p-zhang", NOW + dt.timedelta(minutes=2)))
    waiting = asyncio.create_task(store.wait_for_scan_answer("r-w", 30.0))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await store.answer_scan_request("r-w", ScanOutcome.VERIFIED, "app-1", NOW)
    await asyncio.wait_for(waiting, 2.0)
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_apps_are_registered_listed_and_revoked(store: SqlStore) -> None:
    await store.register_app(App("app-1", "青岛税务APP", "ab" * 32, revoked=False), NOW)
    assert [a.name for a in await store.apps()] == ["青岛税务APP"]
    assert await store.revoke_app("app-1") and not await store.revoke_app("app-none")
    app = await store.app("app-1")
    assert app is not None and app.revoked


async def test_an_unreachable_database_is_store_unavailable(tmp_path: Path) -> None:
    from tests.harness.agent import free_port

    with pytest.raises(StoreUnavailable):
        await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    with pytest.raises(StoreUnavailable):
        await open_store(tmp_path / "no-such-directory" / "store.db")


# --- transactions: all of it or none, however PostgreSQL's pipeline sends it ------------------


async def challenges(store: SqlStore) -> set[str]:
    async with store.database.connection() as db:
        return {row["nonce"] for row in await db.fetchall("SELECT nonce FROM challenges")}


async def test_a_transaction_commits_its_queued_writes_and_the_counted_ones(store: SqlStore) -> None:
    async with store.database.transaction() as db:
        await db.write("INSERT INTO challenges VALUES (?, ?)", ("queued", NOW))
        assert await db.execute("INSERT INTO challenges VALUES (?, ?)", ("counted", NOW)) == 1
        await db.write("INSERT INTO challenges VALUES (?, ?)", ("last", NOW))
    assert await challenges(store) == {"queued", "counted", "last"}


async def test_a_queued_write_tells_its_row_count_once_the_transaction_has_ended(store: SqlStore) -> None:
    await store.add_challenge("old", NOW)
    async with store.database.transaction() as db:
        none = await db.write("DELETE FROM challenges WHERE nonce = ?", ("never-issued",))
        one = await db.write("DELETE FROM challenges WHERE nonce = ?", ("old",))
        inserted = await db.write("INSERT INTO challenges SELECT ?, ? WHERE 1 = 0", ("never", NOW))
    assert (none.rowcount, one.rowcount, inserted.rowcount) == (0, 1, 0)
    assert await challenges(store) == set()


async def test_a_transaction_whose_last_queued_write_fails_keeps_none_of_its_statements(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.add_challenge("taken", NOW)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        async with store.database.transaction() as db:
            assert await db.execute("INSERT INTO challenges VALUES (?, ?)", ("first", NOW)) == 1
            await db.write("INSERT INTO challenges VALUES (?, ?)", ("taken", NOW))  # fails at COMMIT, at the latest
    assert await challenges(store) == {"taken"}
    await store.add_challenge("after", NOW)  # the connection went back to the pool in a good state
    assert await challenges(store) == {"taken", "after"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # rolled back by us, quietly


async def test_a_transaction_left_by_an_exception_keeps_none_of_its_statements(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        async with store.database.transaction() as db:
            await db.write("INSERT INTO challenges VALUES (?, ?)", ("queued", NOW))
            await db.execute("INSERT INTO challenges VALUES (?, ?)", ("counted", NOW))
            raise LookupError("the caller changed its mind")
    assert await challenges(store) == set()
    await store.add_challenge("after", NOW)
    assert await challenges(store) == {"after"}
