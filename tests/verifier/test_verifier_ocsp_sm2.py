"""OCSP signed in SM2: `openssl ocsp` signing with the SM2 responder key the SM2 issuing CA
authorised, at the GM/T 0009 default ID (``-rsigopt distid:1234567812345678``; OpenSSL 3.0 can),
and the verifier checking the answer inside a whole SM2 login token's validation."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import auth_token, signed_data
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.skf import SkfDriver
from cert_agent.verifier.errors import AuthTokenInvalid
from cert_agent.verifier.ocsp import OcspSettings
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures.skf_build import SkfFixtures
from tests.harness.ocsp import OcspResponder, index_line

ORIGIN = "https://etax.example.com"
NONCE = base64.b64encode(bytes(range(32))).decode()
DISTID = "distid:1234567812345678"


def _responder(skf: SkfFixtures, directory: Path, signing: tuple[str, ...]) -> OcspResponder:
    """The SM2 CA's responder: every media certificate good, but ``locked-sm2``, revoked yesterday."""
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    lines = [
        index_line(skf.certificate_der(c.name), yesterday if c.name == "locked-sm2" else None)
        for m in skf.media
        for c in m.certs
        if c.kind == "SM2"
    ]
    return OcspResponder(None, directory, signer=skf.ocsp_responder, key=skf.ocsp_responder_key, ca=skf.issuing_ca,
                         index_lines=lines, signing=signing)  # fmt: skip


@pytest.fixture
def sm2_responder(skf_fixtures: SkfFixtures, tmp_path: Path) -> Iterator[OcspResponder]:
    running = _responder(skf_fixtures, tmp_path / "ocsp", ("-rmd", "sm3", "-rsigopt", DISTID))
    running.start()
    yield running
    running.stop()


def _token(skf: SkfFixtures, cert_name: str, pin: str) -> dict[str, str]:
    """An SM2 login token made on the medium that holds ``cert_name`` (the software SKF device)."""
    medium = skf.medium_of(cert_name)
    driver = SkfDriver([skf.library])
    try:
        token = driver.find_token(token_id=skf.token_id(medium.name))
        data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
        with Pin(pin) as secret:
            signature = driver.sign(token, bytes.fromhex(skf.cert(cert_name).cert_id), secret, data,
                                    SignatureAlgorithm.SM2SM3)  # fmt: skip
    finally:
        driver.close()
    return auth_token(base64.b64encode(skf.certificate_der(cert_name)).decode(), SignatureAlgorithm.SM2SM3, signature)


def _validator(skf: SkfFixtures, url: str) -> AuthTokenValidator:
    # As the Web eID validators recommend with OCSP: the issuing CA is the trust anchor.
    settings = ValidatorSettings.from_files(ORIGIN, [skf.issuing_ca], ocsp=OcspSettings(url=url))
    return AuthTokenValidator(settings)


async def test_a_good_answer_signed_in_sm2_lets_an_sm2_login_through(
    skf_fixtures: SkfFixtures, sm2_responder: OcspResponder
) -> None:
    validator = _validator(skf_fixtures, sm2_responder.url)
    result = await validator.validate(_token(skf_fixtures, "hairun-sm2", skf_fixtures.medium("sm2-ukey").pin), NONCE)
    assert result.algorithm == "SM2SM3" and validator.ocsp_status.last_answer_at is not None


async def test_a_certificate_the_sm2_responder_says_is_revoked_is_refused(
    fresh_skf_fixtures: SkfFixtures, tmp_path: Path
) -> None:
    skf = fresh_skf_fixtures
    # the locked medium's certificate is the revoked one; its PIN is reset here to sign with it
    state = skf.store.pin_state("dev-sm2-locked", "SM2") | {"remain": "6"}
    (skf.store.device("dev-sm2-locked") / "SM2" / "pin.conf").write_text(
        "".join(f"{k}={v}\n" for k, v in state.items()), encoding="utf-8"
    )
    responder = _responder(skf, tmp_path / "ocsp", ("-rmd", "sm3", "-rsigopt", DISTID))
    responder.start()
    try:
        with pytest.raises(AuthTokenInvalid) as caught:
            await _validator(skf, responder.url).validate(_token(skf, "locked-sm2", "Lk2026sm2"), NONCE)
    finally:
        responder.stop()
    assert caught.value.code == "CERT_REVOKED"


async def test_an_answer_signed_with_openssls_empty_id_is_refused(skf_fixtures: SkfFixtures, tmp_path: Path) -> None:
    responder = _responder(skf_fixtures, tmp_path / "ocsp", ("-rmd", "sm3"))  # no distid: OpenSSL 3's empty ID
    responder.start()
    try:
        with pytest.raises(AuthTokenInvalid) as caught:
            await _validator(skf_fixtures, responder.url).validate(
                _token(skf_fixtures, "hairun-sm2", skf_fixtures.medium("sm2-ukey").pin), NONCE
            )
    finally:
        responder.stop()
    assert caught.value.code == "OCSP_RESPONSE_INVALID"
