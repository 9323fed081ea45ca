"""The verifier the demo, the tests and the benchmarks run: seeded with the fixture taxpayers,
validating tokens against the fixture PKI. Wiring, not product: nothing installed imports it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cert_agent.verifier.factors.scan import ScanFactor
from cert_agent.verifier.factors.sms import SmsFactor
from cert_agent.verifier.factors.sms_senders import OutboxSender
from cert_agent.verifier.importer import check_records
from cert_agent.verifier.login import CST, LoginService
from cert_agent.verifier.store import Person, SmsLimit, SmsLimits, open_store
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import verifier_records
from softhsm_fixtures.skf_build import SkfFixtures

OUTBOX = "sms-outbox.jsonl"
# For benchmarks that log one person in hundreds of times: the SMS limits (a production
# safeguard against texting a person without end) would stop them after a few logins.
NO_SMS_LIMITS = SmsLimits(
    interval=0, per_attempt=SmsLimit(10**9, 1), per_person=SmsLimit(10**9, 1), per_phone=SmsLimit(10**9, 1)
)


async def seeded_login_service(
    fixtures: Fixtures,
    directory: Path,
    origin: str,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    on_send: Callable[[dict[str, str]], None] | None = None,
    sms_limits: SmsLimits | None = None,
    database: str | None = None,
    skf: SkfFixtures | None = None,
    on_scan: Callable[[str, Person], None] | None = None,
) -> LoginService:
    """A verifier over ``directory/verifier.db`` (or the ``database`` URL) holding these records (imported again each
    time; the import updates in place), validating tokens for ``origin`` against the fixture
    PKI with its CRL (and, with ``skf``, the SM2 PKI of the SM2 media with its SM2 CRL beside it);
    SMS codes go to ``directory/sms-outbox.jsonl``. For the demo, tests and benchmarks. The caller
    closes ``service.store``."""
    now = clock() if clock else dt.datetime.now(dt.UTC)
    store = await open_store(database if database is not None else directory / "verifier.db")
    await store.import_all(check_records(verifier_records(now.astimezone(CST).date())))
    anchors, intermediates, crls = [fixtures.root_ca], [fixtures.issuing_ca], [fixtures.crl]
    if skf is not None:
        anchors.append(skf.root_ca)
        intermediates.append(skf.issuing_ca)
        crls.append(skf.crl)
    settings = ValidatorSettings.from_files(origin, anchors, intermediates, crls)
    sms = SmsFactor(store, OutboxSender(directory / OUTBOX, on_send), sms_limits)
    service = LoginService(store, AuthTokenValidator(settings), (sms, ScanFactor(store, origin, on_show=on_scan)))
    if clock is not None:
        service.clock = clock
    return service
