"""The verifier's records: what the store keeps and the login flows work on. Plain values."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cert_agent.verifier import jsonout

ROLES = ("法定代表人", "财务负责人", "办税员", "开票员")  # in this order of rights (FAQ item 25)
CROSS_REGION_KINDS = ("跨区域报验户", "跨区税源户")  # the schema's CHECK (migration 4) lists the same
AGREEMENT_STATUSES = ("active", "suspended", "terminated")  # the schema's CHECK (migration 1) lists the same


@dataclass(frozen=True)
class SmsLimit:
    """At most ``count`` codes per ``seconds`` for one key (a login attempt, a person, a phone)."""

    count: int
    seconds: int


@dataclass(frozen=True)
class SmsLimits:
    """How often a code may be sent. A resend waits ``interval`` seconds (the page counts it
    down); one login attempt, one person and one phone each have a ceiling per period."""

    interval: int = 60
    per_attempt: SmsLimit = SmsLimit(3, 600)
    per_person: SmsLimit = SmsLimit(5, 3600)
    per_phone: SmsLimit = SmsLimit(10, 86400)


@dataclass(frozen=True)
class Enterprise:
    taxpayer_id: str
    name: str
    is_agency: bool
    tax_authority: str = ""  # 主管税务机关
    has_cross_region: bool = False  # it has 特定主体 (read with it; never imported)


@dataclass(frozen=True)
class CrossRegionIdentity:
    """特定主体: an enterprise's identity under another tax authority (a construction firm's
    跨区域报验户, a 跨区税源户), which its persons may enter after verification (FAQ 12, 20)."""

    identity_id: str
    taxpayer_id: str
    kind: str  # one of CROSS_REGION_KINDS
    name: str
    tax_authority: str


@dataclass(frozen=True)
class Person:
    """A natural person. ``phone`` is the default number ("" when none is on record, FAQ item
    15); ``other_phones`` the others the person added (item 17): any of them may get the code."""

    person_id: str
    name: str
    id_number: str
    phone: str
    other_phones: tuple[str, ...] = ()

    @property
    def phones(self) -> tuple[str, ...]:
        """Every number on record, the default first."""
        return tuple(p for p in (self.phone, *self.other_phones) if p)


@dataclass(frozen=True)
class Agreement:
    agency_id: str
    client_id: str
    valid_from: dt.date
    valid_to: dt.date
    status: str

    def active_on(self, day: dt.date) -> bool:
        return self.status == AGREEMENT_STATUSES[0] and self.valid_from <= day <= self.valid_to


# a session's person, enterprise and agency (代理业务), as the store reads them (None: gone since)
Parties = tuple[Person | None, Enterprise | None, Enterprise | None]


@dataclass(frozen=True)
class Session:
    """A logged-in person acting for an enterprise (or, 代理业务, for a client through an
    agency), in one of their roles there and, for 特定主体, in one of its cross-region
    identities (None: the enterprise itself)."""

    session_id: str
    person_id: str
    taxpayer_id: str
    agency_id: str | None
    expires_at: dt.datetime
    role: str = ""
    identity_id: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    at: dt.datetime
    person_id: str | None
    taxpayer_id: str | None
    event: str
    detail: str
    hidden: bool


@dataclass(frozen=True)
class AuditEvent:
    """An entry for the audit log, written with the change it records (in one round trip)."""

    at: dt.datetime
    person_id: str | None
    taxpayer_id: str | None
    event: str
    detail: str


class ScanOutcome(StrEnum):
    """How a registered app answered a 扫码验证 request (once)."""

    VERIFIED = "verified"  # the chosen person's face was verified
    WRONG_PERSON = "wrong_person"  # the app verified someone else
    FACE_FAILED = "face_failed"  # the app's face check did not pass


@dataclass(frozen=True)
class ScanRequest:
    """A 扫码验证 request shown as a QR code: for which login attempt and person, until when, and
    (once answered) how and by which app."""

    request_hash: str
    attempt_id: str
    person_id: str
    expires_at: dt.datetime
    outcome: ScanOutcome | None = None
    app_id: str | None = None


@dataclass(frozen=True)
class App:
    """A registered tax app that may answer 扫码验证 requests (its secret is kept as a hash)."""

    app_id: str
    name: str
    secret_sha256: str
    revoked: bool


class LoginKind(StrEnum):
    ENTERPRISE = "enterprise"  # 企业业务
    AGENCY = "agency"  # 代理业务


class Step(StrEnum):
    """Where a login attempt stands. ``ACCEPTS`` says which steps each action of the flow
    accepts; any other step answers LOGIN_EXPIRED and leaves the attempt where it was.

    The stored values are the ones from when the SMS code was the only second factor
    ("verify_code"): instances of two versions share one database during an upgrade."""

    CHOOSE_PERSON = "choose_person"
    SECOND_FACTOR = "verify_code"
    CHOOSE_CLIENT = "choose_client"
    CHOOSE_IDENTITY = "choose_identity"  # 特定主体: the enterprise itself or one of its cross-region identities


class Action(StrEnum):
    BEGIN_FACTOR = "begin_factor"  # the person is chosen: their second factor begins (again: a resend)
    CHECK_FACTOR = "check_factor"  # an answer to the second factor (the SMS code)
    CHOOSE_CLIENT = "choose_client"  # 代理业务: the client enterprise
    CHOOSE_IDENTITY = "choose_identity"  # 企业业务 with cross-region identities: which to enter


ACCEPTS: dict[Action, frozenset[Step]] = {
    Action.BEGIN_FACTOR: frozenset({Step.CHOOSE_PERSON, Step.SECOND_FACTOR}),
    Action.CHECK_FACTOR: frozenset({Step.SECOND_FACTOR}),
    Action.CHOOSE_CLIENT: frozenset({Step.CHOOSE_CLIENT}),
    Action.CHOOSE_IDENTITY: frozenset({Step.CHOOSE_IDENTITY}),
}


@dataclass(frozen=True)
class FactorState:
    """What a second factor left on an attempt for one person: its name, until when it may be
    answered, and its own values (the SMS factor: a salt and the code's salted hash, never the
    code)."""

    factor: str
    person_id: str
    expires_at: dt.datetime
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoginAttempt:
    """A certificate login between the certificate step and the session: who may pass the second
    factor, which step comes next, and (代理业务) which clients may be chosen."""

    attempt_id: str
    kind: LoginKind
    taxpayer_id: str
    certificate_sha256: str
    persons: tuple[str, ...]
    expires_at: dt.datetime
    step: Step = Step.CHOOSE_PERSON
    factor: FactorState | None = None
    clients: tuple[str, ...] = field(default=())
    roles: tuple[tuple[str, str], ...] = ()  # each person's highest role in the taxpayer (the session's)
    cross_region: bool = False  # the taxpayer has 特定主体: an identity is chosen after the factor

    def accepts(self, action: Action) -> bool:
        return self.step in ACCEPTS[action]

    def state_json(self) -> str:
        """What the store keeps of the attempt beside its id and expiry (the factor's state under
        "code", the key it had when SMS was the only factor)."""
        state: dict[str, Any] = {
            "kind": self.kind.value,
            "taxpayerId": self.taxpayer_id,
            "certificateSha256": self.certificate_sha256,
            "persons": list(self.persons),
            "step": self.step.value,
            "clients": list(self.clients),
            "roles": dict(self.roles),
            "crossRegion": self.cross_region,
        }
        if self.factor is not None:
            state["code"] = {
                **dict(self.factor.values),
                "factor": self.factor.factor,
                "personId": self.factor.person_id,
                "expiresAt": self.factor.expires_at.isoformat(),
            }
        return jsonout.dumps(state)

    @classmethod
    def from_state(cls, attempt_id: str, state_json: str, expires_at: dt.datetime) -> LoginAttempt:
        state = json.loads(state_json)
        return cls(
            attempt_id=attempt_id,
            kind=LoginKind(state["kind"]),
            taxpayer_id=state["taxpayerId"],
            certificate_sha256=state["certificateSha256"],
            persons=tuple(state["persons"]),
            expires_at=expires_at,
            step=Step(state["step"]),
            factor=_factor(state.get("code")),
            clients=tuple(state.get("clients", ())),
            roles=tuple(state.get("roles", {}).items()),
            cross_region=bool(state.get("crossRegion", False)),
        )


def _factor(stored: dict[str, str] | None) -> FactorState | None:
    if not stored:
        return None
    values = {k: v for k, v in stored.items() if k not in ("factor", "personId", "expiresAt")}
    return FactorState(
        stored.get("factor", "sms"),  # written before there were other factors
        stored["personId"],
        dt.datetime.fromisoformat(stored["expiresAt"]),
        tuple(sorted(values.items())),
    )
