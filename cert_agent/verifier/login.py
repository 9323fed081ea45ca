"""Certificate login (企业业务) and agency certificate login (代理业务).

Steps, each an HTTP call of the verifier's API (``app.py``):

1. ``challenge``: a one-time nonce (32 random bytes, base64), valid five minutes;
2. ``certificate``: the Web eID token from the agent. The nonce is consumed (once), the token
   validated, the taxpayer looked up by the certificate's taxpayer ID; for 代理业务 it must be
   an agency. Answer: the persons linked to the taxpayer, names and phones masked;
3. ``send_code`` / ``show_scan``: the chosen person's second factor begins (``factors/``: an
   SMS code, or a QR code for 扫码验证); again: a resend, a new QR code, or the other method;
4. ``verify_code`` (the SMS code) / ``wait_scan`` (a long poll until the app has answered): a
   right answer ends 企业业务 with a session; for 代理业务 it answers the client enterprises with
   an active agreement (none: 未查询到您与该企业的关联关系信息). ``answer_scan`` is the app's
   side: a registered app's word on the person it verified;
5. ``choose_client`` (代理业务): the session records agency, person and client;
   ``choose_identity`` (企业业务 of an enterprise with 特定主体): the enterprise itself or one of
   its cross-region identities.
After login, ``switch_identity`` (切换主管税务机关) and ``switch_role`` (身份切换) change what the
session acts as without logging out: a new session id each time, audited.
``cancel`` ends an attempt at any step (the page's 返回): a QR code it showed is no longer current.

Which step each call accepts is the one table ``store.records.ACCEPTS``; a call at any other
step answers LOGIN_EXPIRED and changes nothing.

Lockout (FAQ item 14: 一天内同一认证方式连续失败5次): five consecutive failures of one method
(wrong SMS codes; 扫码验证 answered for another person or with a failed face check) within one
China Standard Time day lock that person's certificate login until 00:00 CST the next day; a
successful login resets the counts.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509

from cert_agent.common.errors import BadRequest
from cert_agent.verifier.errors import (
    AccountLocked,
    ChallengeInvalid,
    IdentitySwitchRefused,
    LoginExpired,
    NoRelationship,
    NotAnAgency,
    NotFound,
    NotLoggedIn,
    ScanExpired,
    ScanNotCurrent,
    ScanReplayed,
    ScanUnknown,
    StoreUnavailable,
    TaxpayerIdInvalid,
    TaxpayerUnknown,
)
from cert_agent.verifier.factors import SecondFactor, Verdict
from cert_agent.verifier.factors.scan import request_hash, request_of
from cert_agent.verifier.masking import mask_name, mask_phone
from cert_agent.verifier.store import Action, AuditEntry, LoginAttempt, LoginKind, Session, Step, Store
from cert_agent.verifier.store.records import App, AuditEvent, Enterprise, FactorState, Parties, ScanOutcome
from cert_agent.verifier.validation import AuthTokenValidator

CST = dt.timezone(dt.timedelta(hours=8), "CST")
MAX_FAILURES = 5
CHALLENGE_SECONDS = 300
SCAN_WAIT_SECONDS = 25.0  # one long poll of a page waiting for the app (a page asks again after it)
ATTEMPT_SECONDS = 600
SESSION_SECONDS = 1800
_NOT_NOW = {  # why an action is refused at another step (LOGIN_EXPIRED's detail)
    Action.BEGIN_FACTOR: "the second factor of this login is already passed",
    Action.CHECK_FACTOR: "no second factor was begun for this login",
    Action.CHOOSE_CLIENT: "no client choice is pending",
    Action.CHOOSE_IDENTITY: "no identity choice is pending",
}


def cst_day(moment: dt.datetime) -> str:
    return moment.astimezone(CST).date().isoformat()


def next_cst_midnight(moment: dt.datetime) -> dt.datetime:
    local = moment.astimezone(CST)
    return dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0, 0), tzinfo=CST)


@dataclass
class LoginService:
    store: Store
    validator: AuthTokenValidator
    factors: tuple[SecondFactor, ...]  # the second factors offered, by their names (sms, scan)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # 身份切换 after a certificate login: "enterprise" (the person's roles in the enterprise the
    # certificate names) or "linked" (also the other enterprises the person is linked to)
    switch_scope: str = "enterprise"

    def factor(self, name: str) -> SecondFactor:
        """The offered factor of this name; BAD_REQUEST for any other."""
        for factor in self.factors:
            if factor.name == name:
                return factor
        raise BadRequest("method", " or ".join(f.name for f in self.factors))

    # --- 1. challenge -----------------------------------------------------------------------

    async def issue_challenge(self) -> dict[str, Any]:
        nonce = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        expires = self.clock() + dt.timedelta(seconds=CHALLENGE_SECONDS)
        await self.store.add_challenge(nonce, expires)
        return {"nonce": nonce, "expiresAt": expires.isoformat()}

    # --- 2. certificate ---------------------------------------------------------------------

    async def certificate(self, kind: LoginKind, auth_token: Any, nonce: str) -> dict[str, Any]:
        now = self.clock()
        if not await self.store.consume_challenge(nonce, now):
            raise ChallengeInvalid()
        validated = await self.validator.validate(auth_token, nonce)
        tid = validated.taxpayer_id
        if tid is None or not tid.is_valid:
            raise TaxpayerIdInvalid(tid.value if tid else "")
        enterprise, people = await self.store.enterprise_and_people(tid.value)
        if enterprise is None:
            raise TaxpayerUnknown(tid.value)
        if kind is LoginKind.AGENCY and not enterprise.is_agency:
            raise NotAnAgency(tid.value)
        if not people:
            raise NoRelationship(enterprise.taxpayer_id)
        attempt = LoginAttempt(
            attempt_id=secrets.token_urlsafe(24),
            kind=kind,
            taxpayer_id=enterprise.taxpayer_id,
            certificate_sha256=hashlib.sha256(validated.certificate_der).hexdigest(),
            persons=tuple(person.person_id for person, _ in people),
            expires_at=now + dt.timedelta(seconds=ATTEMPT_SECONDS),
            roles=tuple((person.person_id, roles[0]) for person, roles in people if roles),
            cross_region=enterprise.has_cross_region,
        )
        await self.store.save_attempt(attempt)
        return {
            "attemptId": attempt.attempt_id,
            "kind": kind.value,
            "enterprise": {"taxpayerId": enterprise.taxpayer_id, "name": enterprise.name},
            "persons": [
                {
                    "personId": person.person_id,
                    "name": mask_name(person.name),
                    "phone": mask_phone(person.phone),
                    "phones": [mask_phone(phone) for phone in person.phones],
                    "roles": roles,
                    "methods": self._methods_for(person.phones),
                }
                for person, roles in people
            ],
        }

    def _methods_for(self, phones: tuple[str, ...]) -> list[str]:
        """The second factors this person can use: no phone, no SMS (FAQ item 15)."""
        return [f.name for f in self.factors if f.name != "sms" or phones]

    # --- 3. the second factor begins ------------------------------------------------------

    async def send_code(self, attempt_id: str, person_id: str, phone_index: int = 0) -> dict[str, Any]:
        """短信验证: a code to one of the person's phones, the default first (again: a resend)."""
        return await self._begin(attempt_id, person_id, self.factor("sms"), phone_index)

    async def show_scan(self, attempt_id: str, person_id: str) -> dict[str, Any]:
        """扫码验证: a QR code for the person's tax app (again: a new one)."""
        return await self._begin(attempt_id, person_id, self.factor("scan"))

    async def _begin(self, attempt_id: str, person_id: str, factor: SecondFactor, choice: int = 0) -> dict[str, Any]:
        now = self.clock()
        found, person, failures = await self.store.attempt_and_person(attempt_id, now, person_id, cst_day(now))
        attempt = _live(found, Action.BEGIN_FACTOR)  # a resend is at SECOND_FACTOR
        if person_id not in attempt.persons:
            raise NoRelationship(person_id)
        _check_lock(failures, now)
        if person is None:  # removed since the attempt listed them
            raise NoRelationship(person_id)
        begun = await factor.begin(attempt, person, now, choice)
        audit = AuditEvent(now, person_id, attempt.taxpayer_id, *begun.audit) if begun.audit else None
        # never extends it
        await self.store.update_attempt(replace(attempt, step=Step.SECOND_FACTOR, factor=begun.state), audit)
        return begun.reply

    # --- 4. the answer to the second factor -------------------------------------------------

    async def verify_code(self, attempt_id: str, answer: str) -> dict[str, Any]:
        """The SMS code the person typed."""
        now = self.clock()
        attempt = await self._attempt(attempt_id, now, Action.CHECK_FACTOR)
        state = self._state_of(attempt, self.factor("sms"))
        return await self._judge(attempt, state, self.factor("sms"), answer, now)

    async def wait_scan(self, attempt_id: str, timeout: float = SCAN_WAIT_SECONDS) -> dict[str, Any]:
        """A page's long poll: answers as soon as the app has answered the attempt's QR code
        (on this instance or another), or ``{"pending": true}`` after ``timeout`` seconds."""
        scan = self.factor("scan")
        deadline = asyncio.get_running_loop().time() + timeout
        waited_for: str | None = None  # the code this wait is for: a newer one shown ends it
        while True:
            now = self.clock()
            attempt = await self._attempt(attempt_id, now, Action.CHECK_FACTOR)
            state = self._state_of(attempt, scan)
            request = request_of(state)
            if waited_for is not None and request != waited_for:
                return {"pending": True}  # the page showed a new code; its own wait answers for it
            waited_for = request
            result = await self._judge(attempt, state, scan, "", now)
            remaining = deadline - asyncio.get_running_loop().time()
            if not result.get("pending") or remaining <= 0:
                return result
            await self.store.wait_for_scan_answer(request, remaining)

    async def _judge(
        self, attempt: LoginAttempt, state: FactorState, factor: SecondFactor, answer: str, now: dt.datetime
    ) -> dict[str, Any]:
        method = factor.lockout_method
        count = 0
        if factor.guessable:
            # Every guess is counted before it is checked, in one statement, so guesses sent in
            # parallel (to one instance or several) each get their own number and never more than
            # MAX_FAILURES are checked in a day; a right answer resets the count. A person already
            # locked today gets a count past MAX_FAILURES here, and the lock as the answer.
            count = await self.store.record_failure(state.person_id, method, cst_day(now))
            if count > MAX_FAILURES:
                raise _locked_until_midnight(now)
        verdict = await factor.check(state, answer, now)
        if verdict is Verdict.PENDING:
            return {"pending": True}
        if verdict is Verdict.WRONG:
            if not factor.guessable:  # counted when the failure happened (the app's answer)
                count = (await self.store.failures_by_method(state.person_id, cst_day(now))).get(method, 0)
            wrong = await factor.wrong_answer(state, max(0, MAX_FAILURES - count))
            if factor.guessable:
                await self.store.audit(now, state.person_id, attempt.taxpayer_id, "login_failed", wrong.code)
            if count >= MAX_FAILURES:
                raise _locked_until_midnight(now)
            raise wrong
        # A success ends every method's run: the person's failures are reset with the step's write.
        if attempt.kind is LoginKind.ENTERPRISE and not attempt.cross_region:  # straight to the session
            return await self._open_session(attempt, state.person_id, attempt.taxpayer_id, None, now, passed=True)
        await self.store.reset_all_failures(state.person_id)
        if attempt.kind is LoginKind.ENTERPRISE:  # with 特定主体 when the attempt began
            identities = await self._identity_choices(await self.store.enterprise(attempt.taxpayer_id))
            if len(identities) > 1:  # 特定主体: which of the enterprise's identities to enter
                await self.store.update_attempt(replace(attempt, step=Step.CHOOSE_IDENTITY))
                return {"identityChoices": identities}
            return await self._open_session(attempt, state.person_id, attempt.taxpayer_id, None, now)
        clients = await self._clients(attempt.taxpayer_id, now)
        if not clients:
            await self.store.drop_attempt(attempt.attempt_id)
            raise NoRelationship(attempt.taxpayer_id)
        chosen = tuple(c["taxpayerId"] for c in clients)
        await self.store.update_attempt(replace(attempt, step=Step.CHOOSE_CLIENT, clients=chosen))
        return {"clients": clients}

    def _state_of(self, attempt: LoginAttempt, factor: SecondFactor) -> FactorState:
        state = attempt.factor
        if state is None or state.factor != factor.name:
            raise LoginExpired(_NOT_NOW[Action.CHECK_FACTOR])
        return state

    # --- the app's side of 扫码验证 ----------------------------------------------------------

    async def answer_scan(self, app: App, request_id: str, id_number: str, face_verified: bool) -> dict[str, Any]:
        """A registered app's answer to the QR code it scanned: the identity number of the person
        whose face it verified (or that the check failed). Each refusal has its own code; a
        wrong person or a failed face check counts in that person's 扫码验证 lockout."""
        now = self.clock()
        scan = self.factor("scan")
        digest = request_hash(request_id)
        request = await self.store.scan_request(digest)
        if request is None:
            raise ScanUnknown()
        if request.outcome is not None:
            raise ScanReplayed()
        if request.expires_at <= now:
            raise ScanExpired()
        attempt = await self.store.attempt(request.attempt_id, now)
        if attempt is None or attempt.step is not Step.SECOND_FACTOR:
            raise ScanNotCurrent("the login was cancelled, timed out or finished")
        state = attempt.factor
        if state is None or state.factor != scan.name or request_of(state) != digest:
            raise ScanNotCurrent("the login shows a newer QR code")
        person = await self.store.person(request.person_id)
        if not face_verified:
            outcome = ScanOutcome.FACE_FAILED
        elif person is not None and id_number == person.id_number:
            outcome = ScanOutcome.VERIFIED
        else:
            outcome = ScanOutcome.WRONG_PERSON
        if not await self.store.answer_scan_request(digest, outcome, app.app_id, now):
            raise ScanReplayed("answered at the same moment by another call")
        if outcome is not ScanOutcome.VERIFIED:
            count = await self.store.record_failure(request.person_id, scan.lockout_method, cst_day(now))
            await self.store.audit(now, request.person_id, attempt.taxpayer_id, "login_failed", outcome.value)
            raise await scan.wrong_answer(state, max(0, MAX_FAILURES - count))
        await self.store.audit(now, request.person_id, attempt.taxpayer_id, "scan_verified", app.name)
        enterprise = await self.store.enterprise(attempt.taxpayer_id)
        return {
            "confirmed": True,
            "person": mask_name(person.name if person else ""),
            "enterprise": enterprise.name if enterprise else "",
        }

    async def cancel(self, attempt_id: str) -> dict[str, Any]:
        """The page's 返回: the attempt ends (a QR code it showed is no longer current)."""
        attempt = await self.store.attempt(attempt_id, self.clock())
        if attempt is None or not await self.store.drop_attempt(attempt_id):
            raise LoginExpired()
        person = attempt.factor.person_id if attempt.factor else None
        await self.store.audit(self.clock(), person, attempt.taxpayer_id, "login_cancelled", "")
        return {"cancelled": True}

    # --- 5. the client enterprise (代理业务) --------------------------------------------------

    async def choose_client(self, attempt_id: str, client_id: str) -> dict[str, Any]:
        now = self.clock()
        attempt = await self._attempt(attempt_id, now, Action.CHOOSE_CLIENT)
        if attempt.factor is None:
            raise LoginExpired(_NOT_NOW[Action.CHOOSE_CLIENT])
        if client_id not in {c["taxpayerId"] for c in await self._clients(attempt.taxpayer_id, now)}:
            raise NoRelationship(client_id)
        return await self._open_session(attempt, attempt.factor.person_id, client_id, attempt.taxpayer_id, now)

    # --- 5'. 特定主体: the identity to enter (企业业务) ----------------------------------------

    async def choose_identity(self, attempt_id: str, identity_id: str) -> dict[str, Any]:
        """The enterprise itself (``""``) or one of its cross-region identities."""
        now = self.clock()
        attempt = await self._attempt(attempt_id, now, Action.CHOOSE_IDENTITY)
        if attempt.factor is None:
            raise LoginExpired(_NOT_NOW[Action.CHOOSE_IDENTITY])
        choices = await self._identity_choices(await self.store.enterprise(attempt.taxpayer_id))
        if identity_id not in {i["identityId"] for i in choices}:
            raise NoRelationship(identity_id)
        person_id = attempt.factor.person_id
        return await self._open_session(attempt, person_id, attempt.taxpayer_id, None, now, identity_id or None)

    async def _identity_choices(self, enterprise: Enterprise | None) -> list[dict[str, str]]:
        """The enterprise itself first, then its cross-region identities (none: just itself)."""
        own = {
            "identityId": "",
            "kind": "本企业",
            "name": enterprise.name if enterprise else "",
            "taxAuthority": enterprise.tax_authority if enterprise else "",
        }
        if enterprise is None or not enterprise.has_cross_region:
            return [own]
        others = [
            {"identityId": i.identity_id, "kind": i.kind, "name": i.name, "taxAuthority": i.tax_authority}
            for i in await self.store.identities_of(enterprise.taxpayer_id)
        ]
        return [own, *others]

    # --- after login: 切换主管税务机关 and 身份切换, without logging out -------------------------

    async def switch_identity(self, session: Session, identity_id: str) -> tuple[Session, dict[str, Any]]:
        """切换主管税务机关 (FAQ item 12): the enterprise itself or one of its cross-region
        identities. The session id rotates; the switch is audited."""
        if session.agency_id is not None:
            raise IdentitySwitchRefused("an agency session acts for its client only")
        choices = await self._identity_choices(await self.store.enterprise(session.taxpayer_id))
        if identity_id not in {i["identityId"] for i in choices}:
            raise NoRelationship(identity_id)
        return await self._rotate(session, replace(session, identity_id=identity_id or None), "identity_switched")

    async def switch_role(self, session: Session, taxpayer_id: str, role: str) -> tuple[Session, dict[str, Any]]:
        """身份切换 (FAQ items 31, 32): another of the person's roles, in this enterprise or (where
        the bureau allows it, ``switch_scope = "linked"``) in another enterprise they are linked to.
        A person without that link: NO_RELATIONSHIP (未查询到您与该企业的关联关系信息)."""
        if session.agency_id is not None:
            raise IdentitySwitchRefused("an agency session acts for its client only")
        roles = {e.taxpayer_id: r for e, r in await self.store.links_of(session.person_id)}
        if role not in roles.get(taxpayer_id, []):
            raise NoRelationship(taxpayer_id)
        if taxpayer_id != session.taxpayer_id and self.switch_scope != "linked":
            raise IdentitySwitchRefused("the certificate names another enterprise")
        identity = session.identity_id if taxpayer_id == session.taxpayer_id else None
        switched = replace(session, taxpayer_id=taxpayer_id, role=role, identity_id=identity)
        return await self._rotate(session, switched, "role_switched")

    async def switch_choices(self, session: Session) -> dict[str, Any]:
        """What the account centre's 身份切换 offers: every enterprise the person is linked to with
        their roles there, each marked whether this login may switch to it."""
        links = await self.store.links_of(session.person_id)
        return {
            "scope": self.switch_scope,
            "current": {"taxpayerId": session.taxpayer_id, "role": session.role},
            "enterprises": [
                {
                    "taxpayerId": enterprise.taxpayer_id,
                    "name": enterprise.name,
                    "roles": roles,
                    "allowed": session.agency_id is None
                    and (enterprise.taxpayer_id == session.taxpayer_id or self.switch_scope == "linked"),
                }
                for enterprise, roles in links
            ],
        }

    async def _rotate(self, old: Session, new: Session, event: str) -> tuple[Session, dict[str, Any]]:
        now = self.clock()
        rotated = replace(new, session_id=secrets.token_urlsafe(32))
        if not await self.store.replace_session(old.session_id, rotated, now):
            raise NotLoggedIn()
        detail = f"{rotated.taxpayer_id} {rotated.role} {rotated.identity_id or ''}".strip()
        await self.store.audit(now, rotated.person_id, rotated.taxpayer_id, event, detail)
        return rotated, await self.describe(rotated)

    # --- the account centre: sessions and history ----------------------------------------

    async def session(self, session_id: str) -> Session:
        """The live session with this id, or NotLoggedIn."""
        session = await self.store.session(session_id, self.clock()) if session_id else None
        if session is None:
            raise NotLoggedIn()
        return session

    async def logout(self, session: Session) -> None:
        await self.store.end_session(session.session_id)
        await self.store.audit(self.clock(), session.person_id, session.taxpayer_id, "logout", "")

    async def history(self, session: Session) -> list[AuditEntry]:
        return await self.store.history(session.person_id)

    async def hide_history_entry(self, session: Session, entry_id: int) -> None:
        """清除记录: the entry leaves the person's history; the audit log keeps it."""
        if not await self.store.hide_entry(session.person_id, entry_id):
            raise NotFound(str(entry_id))

    # --- operations -------------------------------------------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Is the service able to log people in: the database answers, every configured CRL is
        within its nextUpdate, and (with OCSP) the responder's last exchange did not fail?
        (healthy, details without personal data)."""
        now = self.clock()
        try:
            await self.store.ping()
            database = await self.store.integrity()  # "ok" or "corrupt"
        except StoreUnavailable:
            database = "unavailable"
        crls = []
        for der in self.validator.settings.crls:
            crl = x509.load_der_x509_crl(der)
            next_update = crl.next_update_utc
            crls.append(
                {
                    "issuer": crl.issuer.rfc4514_string(),
                    "nextUpdate": next_update.isoformat() if next_update else None,
                    "fresh": next_update is None or next_update > now,
                }
            )
        details: dict[str, Any] = {"database": database, "crls": crls}
        healthy = database == "ok" and all(c["fresh"] for c in crls)
        if self.validator.settings.ocsp is not None:  # the responder's last word, when OCSP is on
            status = self.validator.ocsp_status
            details["ocsp"] = {
                "lastAnswerAt": status.last_answer_at.isoformat() if status.last_answer_at else None,
                "lastFailureAt": status.last_failure_at.isoformat() if status.last_failure_at else None,
                "lastFailure": status.last_failure or None,
                "failing": status.failing,
            }
            healthy = healthy and not status.failing
        return healthy, {"status": "ok" if healthy else "degraded", **details}

    async def purge(self) -> dict[str, int]:
        """Delete expired challenges, login attempts and sessions, the factor's records older than
        it needs them (SMS sends: the longest send limit), and past days' failure counts (the
        audit log is kept)."""
        now = self.clock()
        keep_since = now - dt.timedelta(seconds=max(f.records_kept_for() for f in self.factors))
        return await self.store.purge(now, keep_since, cst_day(now))

    # --- helpers ------------------------------------------------------------------------------

    async def _attempt(self, attempt_id: str, now: dt.datetime, action: Action) -> LoginAttempt:
        """The live attempt, at a step that accepts ``action`` (else LOGIN_EXPIRED, unchanged)."""
        return _live(await self.store.attempt(attempt_id, now), action)

    async def _clients(self, agency_id: str, now: dt.datetime) -> list[dict[str, str]]:
        today = now.astimezone(CST).date()
        clients = []
        for agreement in await self.store.agreements_of(agency_id):
            client = await self.store.enterprise(agreement.client_id)
            if client and agreement.active_on(today):
                clients.append({"taxpayerId": client.taxpayer_id, "name": client.name})
        return clients

    async def _open_session(
        self,
        attempt: LoginAttempt,
        person_id: str,
        taxpayer_id: str,
        agency_id: str | None,
        now: dt.datetime,
        identity_id: str | None = None,
        *,
        passed: bool = False,  # the second factor passed in this request: reset the failures here
    ) -> dict[str, Any]:
        # the person's highest role where they act (代理业务: in the agency), read at the certificate step
        session = Session(
            secrets.token_urlsafe(32),
            person_id,
            taxpayer_id,
            agency_id,
            now + dt.timedelta(seconds=SESSION_SECONDS),
            dict(attempt.roles).get(person_id, ""),
            identity_id,
        )
        reset = person_id if passed else None
        if not await self.store.drop_attempt(attempt.attempt_id, reset_failures_of=reset):  # finished in parallel
            raise LoginExpired()
        event = "login_agency" if agency_id else "login_enterprise"
        audit = AuditEvent(now, person_id, taxpayer_id, event, agency_id or identity_id or "")
        parties = await self.store.create_session(session, now, audit)
        return {"sessionId": session.session_id, **(await self._described(session, parties))}

    async def describe(self, session: Session) -> dict[str, Any]:
        return await self._described(
            session, await self.store.parties(session.person_id, session.taxpayer_id, session.agency_id)
        )

    async def _described(self, session: Session, parties: Parties) -> dict[str, Any]:
        person, enterprise, agency = parties
        choices = [] if agency else await self._identity_choices(enterprise)
        identity = next((c for c in choices if c["identityId"] == (session.identity_id or "")), None)
        return {
            "person": {"personId": session.person_id, "name": person.name if person else ""},
            "enterprise": {"taxpayerId": session.taxpayer_id, "name": enterprise.name if enterprise else ""},
            "agency": {"taxpayerId": agency.taxpayer_id, "name": agency.name} if agency else None,
            "role": session.role,
            "identity": identity if session.identity_id else None,  # 特定主体 in use, or null
            "identities": choices if len(choices) > 1 else [],  # what 切换主管税务机关 offers
            "taxAuthority": (identity or {}).get("taxAuthority", ""),
            "expiresAt": session.expires_at.isoformat(),
        }


def _live(attempt: LoginAttempt | None, action: Action) -> LoginAttempt:
    """The attempt the store found live, at a step that accepts ``action`` (else LOGIN_EXPIRED)."""
    if attempt is None:
        raise LoginExpired()
    if not attempt.accepts(action):
        raise LoginExpired(_NOT_NOW[action])
    return attempt


def _check_lock(failures: dict[str, int], now: dt.datetime) -> None:
    """Locked when any one method has failed MAX_FAILURES times in a row today."""
    if any(count >= MAX_FAILURES for count in failures.values()):
        raise _locked_until_midnight(now)


def _locked_until_midnight(now: dt.datetime) -> AccountLocked:
    until = next_cst_midnight(now)
    return AccountLocked(until.isoformat(), until.strftime("%Y-%m-%d %H:%M"))
