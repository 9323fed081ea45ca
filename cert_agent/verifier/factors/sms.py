"""The SMS code: six digits sent to the person's phone, valid five minutes.

Only a salted hash of the code is kept on the attempt. How often a code may be sent is
``SmsLimits`` (a resend interval, and ceilings per attempt, person and phone), counted by the
store in one statement so that several instances share the counts. The sender is the transport
(``sms_senders.py``: the development outbox, an HTTP gateway); it never logs the text or code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import ClassVar

from cert_agent.common.errors import BadRequest, CertAgentError
from cert_agent.verifier.errors import PhoneMissing, SmsCodeIncorrect, SmsRateLimited
from cert_agent.verifier.factors import Begun, SecondFactor, Verdict
from cert_agent.verifier.factors.sms_senders import SmsSender
from cert_agent.verifier.masking import mask_phone
from cert_agent.verifier.store.interfaces import SmsSends
from cert_agent.verifier.store.records import FactorState, LoginAttempt, Person, SmsLimits

CODE_SECONDS = 300


class SmsFactor(SecondFactor):
    name: ClassVar[str] = "sms"
    guessable: ClassVar[bool] = True
    lockout_method: ClassVar[str] = "certificate"  # the key it had when SMS was the only factor

    def __init__(self, sends: SmsSends, sender: SmsSender, limits: SmsLimits | None = None) -> None:
        self.sends = sends
        self.sender = sender
        self.limits = limits or SmsLimits()

    async def begin(self, attempt: LoginAttempt, person: Person, now: dt.datetime, choice: int = 0) -> Begun:
        if not person.phones:
            raise PhoneMissing(person.person_id)
        if not 0 <= choice < len(person.phones):
            raise BadRequest("phoneIndex", f"0 to {len(person.phones) - 1}")
        phone = person.phones[choice]
        wait = await self.sends.record_sms_send(attempt.attempt_id, person.person_id, phone, now, self.limits)
        if wait:
            raise SmsRateLimited(wait)
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_hex(8)
        expires = now + dt.timedelta(seconds=CODE_SECONDS)
        state = FactorState(self.name, person.person_id, expires, (("salt", salt), ("digest", _hash(salt, code))))
        text = f"【电子税务局】您的登录验证码为 {code}，5分钟内有效。请勿泄露给他人。"
        await self.sender.send(phone, text, code)
        reply = {"sentTo": mask_phone(phone), "expiresIn": CODE_SECONDS, "resendIn": self.limits.interval}
        return Begun(state, reply, audit=("sms_sent", mask_phone(phone)))

    async def check(self, state: FactorState, answer: str, now: dt.datetime) -> Verdict:
        values = dict(state.values)
        fresh = state.expires_at > now
        right = hmac.compare_digest(values.get("digest", ""), _hash(values.get("salt", ""), answer))
        return Verdict.PASSED if fresh and right else Verdict.WRONG

    async def wrong_answer(self, state: FactorState, tries_left: int) -> CertAgentError:
        return SmsCodeIncorrect(tries_left=tries_left)

    def records_kept_for(self) -> int:
        limits = self.limits
        return max(limits.interval, limits.per_attempt.seconds, limits.per_person.seconds, limits.per_phone.seconds)


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()
