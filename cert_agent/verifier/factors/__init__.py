"""Second factors: what a person does after the certificate step to prove it is them.

A :class:`SecondFactor` is begun for a person of the login attempt (``begin``: an SMS code is
sent, a confirmation is asked of their phone), leaves a :class:`FactorState` on the attempt, and
checks each answer (``check``: passed, wrong, or still pending, say while the phone has not
confirmed yet). The login flow (``login.LoginService``) keeps what is the same for every factor:
the steps and their order (``store.records.ACCEPTS``), the lockout after five failures of one
method a day (item 14 of the FAQ: 同一认证方式; each factor names its method), the audit log and
the session. Each factor keeps its own limits and texts: ``sms.py`` (短信验证), ``scan.py``
(扫码验证: a registered tax app confirms the person it verified by face).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from cert_agent.common.errors import CertAgentError
from cert_agent.verifier.store.records import FactorState, LoginAttempt, Person


class Verdict(StrEnum):
    PASSED = "passed"
    WRONG = "wrong"
    PENDING = "pending"  # nothing to judge yet (a confirmation not given): asked again later


@dataclass(frozen=True)
class Begun:
    """What ``begin`` leaves on the attempt, and what the page is told (never the secret)."""

    state: FactorState
    reply: dict[str, Any] = field(default_factory=dict)
    audit: tuple[str, str] | None = None  # the audit log's event and detail for it (no secret)


class SecondFactor(ABC):
    name: ClassVar[str]
    # an answer is a guess: each counts toward the lockout before it is checked (else the factor's
    # failures are counted where they happen, and ``check`` only reads them)
    guessable: ClassVar[bool]
    lockout_method: ClassVar[str]  # the method whose consecutive failures the daily lockout counts

    @abstractmethod
    async def begin(self, attempt: LoginAttempt, person: Person, now: dt.datetime, choice: int = 0) -> Begun:
        """Start the factor for ``person`` (again: a resend); raises its own limits' errors.
        ``choice`` picks among the person's contact points where a factor has several (the SMS
        code: which of their phone numbers, the default first)."""

    @abstractmethod
    async def check(self, state: FactorState, answer: str, now: dt.datetime) -> Verdict:
        """Judge ``answer`` against what ``begin`` left."""

    @abstractmethod
    async def wrong_answer(self, state: FactorState, tries_left: int) -> CertAgentError:
        """The error a wrong answer gets, with the tries left today."""

    @abstractmethod
    def records_kept_for(self) -> int:
        """Seconds the factor's own records (sends) must be kept for its limits to hold."""


__all__ = ["Begun", "FactorState", "SecondFactor", "Verdict"]
