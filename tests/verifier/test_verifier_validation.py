"""Token validation against the tax-authority test PKI: every rejection path, and check-token."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cert_agent.verifier.errors import AuthTokenInvalid
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures import Fixtures
from tests.harness.verifier import make_auth_token

ORIGIN = "https://etax.example.com"


def nonce() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def validator(fixtures: Fixtures, revocation: str = "fail-closed", with_crl: bool = True) -> AuthTokenValidator:
    return AuthTokenValidator(
        ValidatorSettings.from_files(
            ORIGIN, [fixtures.root_ca], [fixtures.issuing_ca], [fixtures.crl] if with_crl else [], revocation
        )
    )


@pytest.mark.parametrize("cert_name", ["hairun-ec", "lanhai-rsa", "p384", "xinda-ec"])
async def test_token_from_a_tax_medium_is_valid_and_names_the_taxpayer(fixtures: Fixtures, cert_name: str) -> None:
    value = nonce()
    result = await validator(fixtures).validate(make_auth_token(fixtures, cert_name, ORIGIN, value), value)
    assert result.taxpayer_id is not None and result.taxpayer_id.value == fixtures.cert(cert_name).taxpayer_id
    assert result.subject_cn == fixtures.cert(cert_name).subject_cn


@pytest.mark.parametrize(
    ("cert_name", "code"),
    [
        ("expired", "CERT_EXPIRED"),
        ("not-yet-valid", "CERT_NOT_YET_VALID"),
        ("revoked", "CERT_REVOKED"),
        ("untrusted", "CERT_UNTRUSTED"),
        ("no-digital-signature", "CERT_BAD_KEY_USAGE"),
    ],
)
async def test_defective_certificates_are_refused_with_their_own_code(
    fixtures: Fixtures, cert_name: str, code: str
) -> None:
    value = nonce()
    with pytest.raises(AuthTokenInvalid) as caught:
        await validator(fixtures).validate(make_auth_token(fixtures, cert_name, ORIGIN, value), value)
    assert caught.value.code == code


async def test_token_signed_for_another_origin_or_nonce_is_refused(fixtures: Fixtures) -> None:
    value = nonce()
    for token, checked_nonce in (
        (make_auth_token(fixtures, "hairun-ec", "https://evil.test", value), value),
        (make_auth_token(fixtures, "hairun-ec", ORIGIN, value), nonce()),
    ):
        with pytest.raises(AuthTokenInvalid) as caught:
            await validator(fixtures).validate(token, checked_nonce)
        assert caught.value.code == "SIGNATURE_INVALID"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"format": "web-eid:2"}, "TOKEN_BAD_FORMAT"),
        ({"algorithm": "HS256"}, "UNSUPPORTED_ALGORITHM"),
        ({"algorithm": "RS256"}, "SIGNATURE_INVALID"),
        ({"signature": "!!!"}, "TOKEN_MALFORMED"),
        ({"signature": ""}, "TOKEN_MALFORMED"),
        ({"unverifiedCertificate": "bm90IGEgY2VydA=="}, "TOKEN_MALFORMED"),
        ({"unverifiedCertificate": ["x"]}, "TOKEN_MALFORMED"),
        ({"appVersion": "x" * 20000}, "TOKEN_MALFORMED"),
    ],
)
async def test_each_structural_defect_has_its_code(fixtures: Fixtures, change: dict[str, Any], code: str) -> None:
    value = nonce()
    token = {**make_auth_token(fixtures, "hairun-ec", ORIGIN, value), **change}
    with pytest.raises(AuthTokenInvalid) as caught:
        await validator(fixtures).validate(token, value)
    assert caught.value.code == code


def past_v3(der: bytes) -> bytes:
    """The certificate with its X.509 version field (``[0] INTEGER 2`` for v3) made 18."""
    version = der.index(b"\xa0\x03\x02\x01\x02") + 4
    return der[:version] + b"\x12" + der[version + 1 :]


async def test_a_certificate_of_a_version_past_v3_is_refused_with_a_documented_code(fixtures: Fixtures) -> None:
    # cryptography refuses such a certificate with InvalidVersion, not ValueError (found by the fuzz test)
    value = nonce()
    token = make_auth_token(fixtures, "hairun-ec", ORIGIN, value)
    der = past_v3(base64.b64decode(token["unverifiedCertificate"]))
    token["unverifiedCertificate"] = base64.b64encode(der).decode()
    with pytest.raises(AuthTokenInvalid) as caught:
        await validator(fixtures).validate(token, value)
    assert caught.value.code == "CERT_UNTRUSTED"  # its issuer's signature no longer holds


async def test_missing_revocation_source_fails_closed_or_open_as_configured(fixtures: Fixtures) -> None:
    value = nonce()
    token = make_auth_token(fixtures, "hairun-ec", ORIGIN, value)
    with pytest.raises(AuthTokenInvalid) as caught:
        await validator(fixtures, "fail-closed", with_crl=False).validate(token, value)
    assert caught.value.code == "REVOCATION_UNAVAILABLE"
    assert await validator(fixtures, "fail-open", with_crl=False).validate(token, value)
    revoked = make_auth_token(fixtures, "revoked", ORIGIN, value)
    with pytest.raises(AuthTokenInvalid):  # a CRL that is there still counts when failing open
        await validator(fixtures, "fail-open").validate(revoked, value)


async def test_validated_paths_are_cached_and_revalidated_after_expiry(fixtures: Fixtures) -> None:
    checker = validator(fixtures)
    value = nonce()
    token = make_auth_token(fixtures, "hairun-ec", ORIGIN, value)
    await checker.validate(token, value)
    assert len(checker._path_cache) == 1
    revoked = make_auth_token(fixtures, "revoked", ORIGIN, value)
    for _ in range(2):  # a cached refusal is still a refusal
        with pytest.raises(AuthTokenInvalid):
            await checker.validate(revoked, value)


def _check_token(fixtures: Fixtures, tmp_path: Path, token: dict[str, Any], value: str, *extra: str) -> Any:
    path = tmp_path / "token.json"
    path.write_text(json.dumps(token), encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cert_agent.verifier",
            "check-token",
            "--token",
            str(path),
            "--origin",
            ORIGIN,
            "--nonce",
            value,
            "--trust-anchor",
            str(fixtures.root_ca),
            "--intermediate",
            str(fixtures.issuing_ca),
            "--crl",
            str(fixtures.crl),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_token_prints_the_subject_of_a_valid_token(fixtures: Fixtures, tmp_path: Path) -> None:
    value = nonce()
    result = _check_token(fixtures, tmp_path, make_auth_token(fixtures, "hairun-ec", ORIGIN, value), value)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "青岛海润贸易有限公司" in result.stdout


def test_check_token_ends_with_the_error_code(fixtures: Fixtures, tmp_path: Path) -> None:
    value = nonce()
    result = _check_token(fixtures, tmp_path, make_auth_token(fixtures, "revoked", ORIGIN, value), value)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == "CERT_REVOKED"
    late = _check_token(
        fixtures,
        tmp_path,
        make_auth_token(fixtures, "hairun-ec", ORIGIN, value),
        value,
        "--at",
        "2040-01-01T00:00:00Z",
        "--no-revocation",
    )
    assert late.returncode == 1 and late.stdout.strip().splitlines()[-1] == "CERT_EXPIRED"
