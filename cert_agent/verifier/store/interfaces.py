"""The store's interfaces, one per concern. The login flows depend on these, never on a
database; ``SqlStore`` implements them all on SQLite or PostgreSQL. Every call is a coroutine:
none blocks the event loop."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from cert_agent.verifier.store.records import (
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


class Directory(Protocol):
    """Enterprises, persons, their roles, agency agreements and cross-region identities (what
    `cert-verifier import` loads)."""

    async def import_all(self, records: dict[str, list[Any]]) -> None: ...
    async def enterprise(self, taxpayer_id: str) -> Enterprise | None: ...
    async def person(self, person_id: str) -> Person | None: ...
    async def people_of(self, taxpayer_id: str) -> list[tuple[Person, list[str]]]: ...
    async def enterprise_and_people(
        self, taxpayer_id: str
    ) -> tuple[Enterprise | None, list[tuple[Person, list[str]]]]: ...  # one round trip
    async def parties(self, person_id: str, taxpayer_id: str, agency_id: str | None) -> Parties: ...  # one round trip
    async def agreements_of(self, agency_id: str) -> list[Agreement]: ...
    async def identities_of(self, taxpayer_id: str) -> list[CrossRegionIdentity]: ...
    async def links_of(self, person_id: str) -> list[tuple[Enterprise, list[str]]]: ...


class Challenges(Protocol):
    """One-time login nonces."""

    async def add_challenge(self, nonce: str, expires_at: dt.datetime) -> None: ...
    async def consume_challenge(self, nonce: str, now: dt.datetime) -> bool: ...


class LoginAttempts(Protocol):
    """Logins under way, and each person's failures per day (the lockout)."""

    async def save_attempt(self, attempt: LoginAttempt) -> None: ...
    async def update_attempt(self, attempt: LoginAttempt, audit: AuditEvent | None = None) -> None: ...
    async def attempt(self, attempt_id: str, now: dt.datetime) -> LoginAttempt | None: ...
    async def attempt_and_person(
        self, attempt_id: str, now: dt.datetime, person_id: str, day: str
    ) -> tuple[LoginAttempt | None, Person | None, dict[str, int]]: ...  # and their failures; one round trip
    async def drop_attempt(self, attempt_id: str, *, reset_failures_of: str | None = None) -> bool: ...
    async def record_failure(self, account: str, method: str, day: str) -> int: ...
    async def failures_by_method(self, account: str, day: str) -> dict[str, int]: ...
    async def reset_all_failures(self, account: str) -> None: ...


class SmsSends(Protocol):
    """The SMS codes sent, for the SMS factor's limits (``factors/sms.py``)."""

    async def record_sms_send(
        self, attempt_id: str, person_id: str, phone: str, now: dt.datetime, limits: SmsLimits
    ) -> int: ...  # 0: the send is recorded; else the seconds to wait (nothing recorded)


class ScanRequests(Protocol):
    """扫码验证 requests (``factors/scan.py``): shown once as a QR code, answered once by an app;
    a page waiting for the answer is woken when it comes, on any instance."""

    async def add_scan_request(self, request: ScanRequest) -> None: ...
    async def scan_request(self, request_hash: str) -> ScanRequest | None: ...
    async def answer_scan_request(
        self, request_hash: str, outcome: ScanOutcome, app_id: str, now: dt.datetime
    ) -> bool: ...  # True for the one answer that counts; False: answered already, or expired
    async def wait_for_scan_answer(self, request_hash: str, timeout: float) -> None: ...


class Apps(Protocol):
    """The tax apps registered to answer 扫码验证 requests (``cert-verifier app``)."""

    async def register_app(self, app: App, now: dt.datetime) -> None: ...
    async def app(self, app_id: str) -> App | None: ...
    async def apps(self) -> list[App]: ...
    async def revoke_app(self, app_id: str) -> bool: ...


class Sessions(Protocol):
    async def create_session(
        self, session: Session, now: dt.datetime, audit: AuditEvent | None = None
    ) -> Parties: ...  # and its parties read after it, in one round trip
    async def replace_session(self, old_id: str, session: Session, now: dt.datetime) -> bool: ...
    async def session(self, session_id: str, now: dt.datetime) -> Session | None: ...
    async def end_session(self, session_id: str) -> None: ...


class AuditLog(Protocol):
    """Append-only: a user's 清除记录 hides an entry from their history, the log keeps it."""

    async def audit(
        self, at: dt.datetime, person_id: str | None, taxpayer_id: str | None, event: str, detail: str
    ) -> None: ...
    async def history(self, person_id: str, include_hidden: bool = False) -> list[AuditEntry]: ...
    async def hide_entry(self, person_id: str, entry_id: int) -> bool: ...


class Store(Directory, Challenges, LoginAttempts, SmsSends, ScanRequests, Apps, Sessions, AuditLog, Protocol):
    """Everything the verifier keeps, in one database."""

    async def ping(self) -> None: ...  # raises StoreUnavailable when the database cannot be used
    async def integrity(self) -> str: ...  # "ok" or "corrupt" (SQLite's quick_check, rate-bounded)
    async def purge(self, now: dt.datetime, keep_sends_since: dt.datetime, today: str) -> dict[str, int]: ...
    async def close(self) -> None: ...
