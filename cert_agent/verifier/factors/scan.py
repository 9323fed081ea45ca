"""扫码验证: the page shows a QR code; the tax app's 扫一扫 reads it, verifies the person's face
(the app's own business: the person need not be logged in to the app, FAQ item 18) and answers
the request through the app API with the person it verified (``LoginService.answer_scan``).

The QR code carries ``etax-scan:1;site=<origin>;r=<request id>``: the site the app answers to, and
a one-time request id (24 random bytes) bound to the login attempt and the chosen person. Only the
id's SHA-256 is stored; the login attempt's own id is never in the code (it is the page's bearer).
A request lives two minutes and is answered once; showing a new code (刷新二维码, or the person
chosen again) replaces it on the attempt, and the old one is no longer current. The image is
rendered here, server-side, by segno (an SVG data: URI the page puts in an <img>).

Failures (another person verified, a face check that did not pass) are counted in the person's
daily lockout for this method when the app answers; ``check`` only reads the answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import ClassVar

import segno

from cert_agent.common.errors import CertAgentError
from cert_agent.verifier.errors import ScanExpired, ScanFaceFailed, ScanWrongPerson
from cert_agent.verifier.factors import Begun, SecondFactor, Verdict
from cert_agent.verifier.store.interfaces import ScanRequests
from cert_agent.verifier.store.records import FactorState, LoginAttempt, Person, ScanOutcome, ScanRequest

REQUEST_SECONDS = 120
PAYLOAD_PREFIX = "etax-scan:1"


def request_hash(request_id: str) -> str:
    return hashlib.sha256(request_id.encode("ascii")).hexdigest()


def request_of(state: FactorState) -> str:
    """The hash of the request a scan's factor state waits for."""
    return dict(state.values).get("request", "")


def qr_payload(site: str, request_id: str) -> str:
    return f"{PAYLOAD_PREFIX};site={site};r={request_id}"


def parse_payload(payload: str) -> tuple[str, str]:
    """(site, request id) of a QR code's text; ValueError for any other text."""
    prefix, *fields = payload.strip().split(";")
    values = dict(field.partition("=")[::2] for field in fields)
    if prefix != PAYLOAD_PREFIX or not values.get("site") or not values.get("r"):
        raise ValueError("not a 扫码验证 code of this service")
    return values["site"], values["r"]


class ScanFactor(SecondFactor):
    name: ClassVar[str] = "scan"
    guessable: ClassVar[bool] = False
    lockout_method: ClassVar[str] = "scan"

    def __init__(
        self,
        requests: ScanRequests,
        site: str,
        seconds: int = REQUEST_SECONDS,
        on_show: Callable[[str, Person], None] | None = None,
    ) -> None:
        self.requests = requests
        self.site = site
        self.seconds = seconds
        self.on_show = on_show  # development only (the demo prints the phone's command): the code's text

    async def begin(self, attempt: LoginAttempt, person: Person, now: dt.datetime, choice: int = 0) -> Begun:
        request_id = secrets.token_urlsafe(24)
        digest = request_hash(request_id)
        expires = now + dt.timedelta(seconds=self.seconds)
        await self.requests.add_scan_request(ScanRequest(digest, attempt.attempt_id, person.person_id, expires))
        text = qr_payload(self.site, request_id)
        if self.on_show is not None:
            self.on_show(text, person)
        image = segno.make(text, error="m").svg_data_uri(scale=5, border=4)
        state = FactorState(self.name, person.person_id, expires, (("request", digest),))
        # the text too: what the code says, for a deep link into the tax app on the same phone
        reply = {"method": self.name, "qrImage": image, "qrText": text, "expiresIn": self.seconds}
        return Begun(state, reply, audit=("scan_shown", ""))

    async def check(self, state: FactorState, answer: str, now: dt.datetime) -> Verdict:
        request = await self.requests.scan_request(request_of(state))
        if request is None or (request.outcome is None and request.expires_at <= now):
            raise ScanExpired()
        if request.outcome is None:
            return Verdict.PENDING
        return Verdict.PASSED if request.outcome is ScanOutcome.VERIFIED else Verdict.WRONG

    async def wrong_answer(self, state: FactorState, tries_left: int) -> CertAgentError:
        request = await self.requests.scan_request(request_of(state))
        if request is not None and request.outcome is ScanOutcome.WRONG_PERSON:
            return ScanWrongPerson(tries_left=tries_left)
        return ScanFaceFailed(tries_left=tries_left)

    def records_kept_for(self) -> int:
        return 0  # its requests are purged by their own expiry (store.purge)
