"""What the verifier keeps: records (``records``), one interface per concern (``interfaces``),
and their implementation on SQLite (``sqlite``)."""

from cert_agent.verifier.store.interfaces import AuditLog, Challenges, Directory, LoginAttempts, Sessions, Store
from cert_agent.verifier.store.records import (
    AGREEMENT_STATUSES,
    ROLES,
    Agreement,
    AuditEntry,
    Enterprise,
    LoginAttempt,
    LoginKind,
    Person,
    SentCode,
    Session,
    SmsLimit,
    SmsLimits,
    Step,
)
from cert_agent.verifier.store.sqlite import MIGRATIONS, SqliteStore

__all__ = [
    "AGREEMENT_STATUSES",
    "MIGRATIONS",
    "ROLES",
    "Agreement",
    "AuditEntry",
    "AuditLog",
    "Challenges",
    "Directory",
    "Enterprise",
    "LoginAttempt",
    "LoginAttempts",
    "LoginKind",
    "Person",
    "SentCode",
    "Session",
    "Sessions",
    "SmsLimit",
    "SmsLimits",
    "SqliteStore",
    "Step",
    "Store",
]
