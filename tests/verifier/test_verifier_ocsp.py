"""OCSP against a real responder (`openssl ocsp` on loopback, serving the fixture PKI's issuing
CA): good, revoked, unknown, down, hanging, signed by the wrong key, stale, replayed (another
request's nonce), a designated responder, fail-closed and fail-open, and an intermediate CA as
the only trust anchor."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from cert_agent.common.errors import CertAgentError
from cert_agent.verifier.ocsp import OcspSettings
from cert_agent.verifier.validation import AuthTokenValidator, ValidatedAuthToken, ValidatorSettings
from softhsm_fixtures import Fixtures
from tests.harness.agent import free_port
from tests.harness.ocsp import OcspResponder, make_rogue_responder
from tests.harness.verifier import ORIGIN, make_auth_token


@pytest.fixture
def responder(fixtures: Fixtures, tmp_path: Path) -> Iterator[OcspResponder]:
    running = OcspResponder(fixtures, tmp_path / "ocsp", omit=frozenset({"xinda-ec"}))
    running.start()
    yield running
    running.stop()


async def validate(
    fixtures: Fixtures,
    cert_name: str,
    ocsp: OcspSettings,
    *,
    revocation: str = "fail-closed",
    at: dt.datetime | None = None,
) -> ValidatedAuthToken:
    """A token signed on the fixture token, validated with the issuing CA as the only trust
    anchor (as the Web eID validators recommend) and revocation by OCSP."""
    settings = ValidatorSettings.from_files(ORIGIN, [fixtures.issuing_ca], revocation=revocation, ocsp=ocsp)
    nonce = base64.b64encode(secrets.token_bytes(32)).decode()
    token = make_auth_token(fixtures, cert_name, ORIGIN, nonce)
    return await AuthTokenValidator(settings).validate(token, nonce, at=at)


async def refused(fixtures: Fixtures, cert_name: str, ocsp: OcspSettings, **kwargs: object) -> str:
    with pytest.raises(CertAgentError) as refusal:
        await validate(fixtures, cert_name, ocsp, **kwargs)  # type: ignore[arg-type]
    return refusal.value.code


async def test_a_good_answer_from_the_authorised_responder_lets_the_login_through(
    fixtures: Fixtures, responder: OcspResponder
) -> None:
    result = await validate(fixtures, "hairun-ec", OcspSettings(url=responder.url))
    assert result.taxpayer_id is not None


async def test_a_revoked_certificate_is_refused_in_every_mode(fixtures: Fixtures, responder: OcspResponder) -> None:
    for mode in ("fail-closed", "fail-open"):
        assert await refused(fixtures, "revoked", OcspSettings(url=responder.url), revocation=mode) == "CERT_REVOKED"


async def test_a_certificate_the_responder_does_not_know_is_refused(
    fixtures: Fixtures, responder: OcspResponder
) -> None:
    assert await refused(fixtures, "xinda-ec", OcspSettings(url=responder.url)) == "CERT_STATUS_UNKNOWN"


async def test_a_responder_that_is_down_or_hangs_fails_closed_or_open_as_configured(fixtures: Fixtures) -> None:
    down = OcspSettings(url=f"http://127.0.0.1:{free_port()}/")
    assert await refused(fixtures, "hairun-ec", down) == "REVOCATION_UNAVAILABLE"
    assert (await validate(fixtures, "hairun-ec", down, revocation="fail-open")).taxpayer_id is not None

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        hanging = OcspSettings(url=f"http://127.0.0.1:{port}/", timeout=0.5)
        assert await refused(fixtures, "hairun-ec", hanging) == "REVOCATION_UNAVAILABLE"
        assert (await validate(fixtures, "hairun-ec", hanging, revocation="fail-open")).taxpayer_id is not None
    finally:
        server.close()


async def test_an_answer_signed_by_a_key_the_ca_never_authorised_is_refused_even_fail_open(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    cert, key = make_rogue_responder(tmp_path)
    rogue = OcspResponder(fixtures, tmp_path / "rogue", signer=cert, key=key)
    rogue.start()
    try:
        for mode in ("fail-closed", "fail-open"):
            code = await refused(fixtures, "hairun-ec", OcspSettings(url=rogue.url), revocation=mode)
            assert code == "OCSP_RESPONSE_INVALID"
    finally:
        rogue.stop()


async def test_a_designated_responder_is_believed_and_no_one_else(
    fixtures: Fixtures, responder: OcspResponder, tmp_path: Path
) -> None:
    cert, key = make_rogue_responder(tmp_path)  # not issued by the CA: trusted because configured
    designated = OcspResponder(fixtures, tmp_path / "designated", signer=cert, key=key)
    designated.start()
    try:
        trusted = x509.load_pem_x509_certificate(cert.read_bytes())
        assert await validate(fixtures, "hairun-ec", OcspSettings(url=designated.url, responder=trusted))
        # the CA's own responder is not the designated one: its answer is not believed here
        code = await refused(fixtures, "hairun-ec", OcspSettings(url=responder.url, responder=trusted))
        assert code == "OCSP_RESPONSE_INVALID"
    finally:
        designated.stop()


async def test_a_stale_answer_or_one_from_the_future_is_refused(fixtures: Fixtures, responder: OcspResponder) -> None:
    settings = OcspSettings(url=responder.url, allowed_skew=60, max_age=120)
    now = dt.datetime.now(dt.UTC)
    # the responder dates its answer now: to a verifier whose clock is 10 minutes ahead it is
    # older than the maximum age; to one 10 minutes behind it comes from the future
    later = await refused(fixtures, "hairun-ec", settings, at=now + dt.timedelta(minutes=10))
    earlier = await refused(fixtures, "hairun-ec", settings, at=now - dt.timedelta(minutes=10))
    assert later == earlier == "OCSP_RESPONSE_INVALID"
    assert await validate(fixtures, "hairun-ec", settings, at=now + dt.timedelta(seconds=30))


@pytest.fixture
async def replaying_proxy(responder: OcspResponder) -> AsyncIterator[str]:
    """Forwards the first request to the real responder, then answers every later request
    with that first answer: a replay, as an attacker on the path could send."""
    first: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        if not first:
            async with (
                aiohttp.ClientSession() as session,
                session.post(responder.url, data=await request.read(), headers=dict(request.headers)) as reply,
            ):
                first.append(await reply.read())
        return web.Response(body=first[0], content_type="application/ocsp-response")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_a_replayed_answer_with_another_requests_nonce_is_refused(
    fixtures: Fixtures, replaying_proxy: str
) -> None:
    settings = OcspSettings(url=replaying_proxy)
    assert await validate(fixtures, "hairun-ec", settings)  # the first answer, to our own nonce
    assert await refused(fixtures, "hairun-ec", settings) == "OCSP_RESPONSE_INVALID"
    assert await validate(fixtures, "hairun-ec", OcspSettings(url=replaying_proxy, nonce=False))  # fresh enough


async def test_revocation_off_asks_no_responder(fixtures: Fixtures) -> None:
    down = OcspSettings(url=f"http://127.0.0.1:{free_port()}/")
    assert await validate(fixtures, "hairun-ec", down, revocation="off")


def test_the_ocsp_settings_come_from_the_configuration_file(fixtures: Fixtures, tmp_path: Path) -> None:
    from cert_agent.verifier.cli import load_verifier_config, ocsp_settings

    config_file = tmp_path / "verifier.toml"
    config_file.write_text(
        f'ocsp = true\nocsp_url = "http://127.0.0.1:9/"\nocsp_responder_certificate = "{fixtures.ocsp_responder}"\n'
        "ocsp_timeout = 2\nocsp_allowed_skew = 30\nocsp_max_age = 60\nocsp_nonce = false\n",
        encoding="utf-8",
    )
    settings = ocsp_settings(load_verifier_config(config_file))
    assert settings is not None and settings.responder is not None
    assert (settings.url, settings.timeout, settings.allowed_skew, settings.max_age, settings.nonce) == (
        "http://127.0.0.1:9/", 2, 30, 60, False,
    )  # fmt: skip
    config_file.write_text('ocsp_max_age = "soon"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="ocsp_max_age"):
        load_verifier_config(config_file)


async def test_health_reports_the_responders_last_exchange(
    fixtures: Fixtures, responder: OcspResponder, tmp_path: Path
) -> None:
    from cert_agent.verifier.factors.sms import SmsFactor
    from cert_agent.verifier.factors.sms_senders import OutboxSender
    from cert_agent.verifier.login import LoginService
    from cert_agent.verifier.store import open_store

    settings = ValidatorSettings.from_files(
        ORIGIN, [fixtures.issuing_ca], ocsp=OcspSettings(url=responder.url), revocation="fail-open"
    )
    validator = AuthTokenValidator(settings)
    store = await open_store(tmp_path / "v.db")
    service = LoginService(store, validator, (SmsFactor(store, OutboxSender(tmp_path / "outbox")),))
    try:
        nonce = base64.b64encode(secrets.token_bytes(32)).decode()
        await validator.validate(make_auth_token(fixtures, "hairun-ec", ORIGIN, nonce), nonce)
        healthy, details = await service.health()
        assert healthy and details["ocsp"]["lastAnswerAt"] and not details["ocsp"]["failing"]
        responder.stop()  # the responder goes down; a login (fail-open) goes through without it
        nonce = base64.b64encode(secrets.token_bytes(32)).decode()
        await validator.validate(make_auth_token(fixtures, "xinda-ec", ORIGIN, nonce), nonce)
        healthy, details = await service.health()
        assert not healthy and details["status"] == "degraded"
        assert details["ocsp"]["failing"] and details["ocsp"]["lastFailure"] == "REVOCATION_UNAVAILABLE"
    finally:
        await service.store.close()
