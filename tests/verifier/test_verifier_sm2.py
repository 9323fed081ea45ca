"""SM2 at the verifier: auth tokens, chains and CRLs in SM2-with-SM3, from vectors kept as data
(``tests/vectors/sm2/vectors.json``, made outside the verifier by the openssl command and gmalg:
``tests/vectors/make_sm2_vectors.py``), and from the agent's own SKF medium."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import auth_token, signed_data
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.skf import SkfDriver
from cert_agent.verifier import sm2
from cert_agent.verifier.errors import AuthTokenInvalid, Sm2Unavailable
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings, load_certificates
from softhsm_fixtures.skf_build import SkfFixtures
from tests.paths import TESTS

VECTORS = json.loads((TESTS / "vectors" / "sm2" / "vectors.json").read_text(encoding="utf-8"))


def _validator(crls: list[str] | None) -> AuthTokenValidator:
    return AuthTokenValidator(
        ValidatorSettings(
            origin=VECTORS["origin"],
            trust_anchors=tuple(base64.b64decode(der) for der in VECTORS["trustAnchors"]),  # SM2 and ECDSA roots
            intermediates=tuple(base64.b64decode(der) for der in VECTORS["intermediates"]),
            revocation="fail-closed" if crls else "off",
            crls=tuple(base64.b64decode(der) for der in crls or ()),
        )
    )


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
async def test_an_sm2_vector_is_accepted_or_refused_with_its_own_code(vector: dict[str, Any]) -> None:
    at = dt.datetime.fromisoformat(VECTORS["at"])
    validator = _validator(vector["crls"])
    if vector["expect"] == "valid":
        result = await validator.validate(vector["token"], VECTORS["nonce"], at=at)
        assert result.algorithm == "SM2SM3" and result.taxpayer_id is not None and result.taxpayer_id.is_valid
        return
    with pytest.raises(AuthTokenInvalid) as caught:
        await validator.validate(vector["token"], VECTORS["nonce"], at=at)
    assert caught.value.code == vector["code"]


def test_the_binding_checks_the_id_and_the_data_and_never_raises() -> None:
    vector = next(v for v in VECTORS["vectors"] if v["name"] == "sm2-valid")
    from asn1crypto import x509

    der = base64.b64decode(vector["token"]["unverifiedCertificate"])
    spki = x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"].dump()
    signature = base64.b64decode(vector["token"]["signature"])
    data = signed_data(VECTORS["origin"], VECTORS["nonce"], SignatureAlgorithm.SM2SM3)
    assert sm2.available() and sm2.verify(spki, data, signature)
    assert not sm2.verify(spki, data, signature, user_id=b"")
    assert not sm2.verify(spki, data + b"!", signature)
    for junk in (b"", b"\x30\x00", bytes(72)):
        assert not sm2.verify(spki, data, junk)
        assert not sm2.verify(junk, data, signature)


def test_the_verifier_refuses_to_start_with_an_sm2_anchor_when_libcrypto_has_no_sm2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A double: no libcrypto without SM2 is installed here, so the binding's loader is told it
    # found none. An ECDSA-only verifier still starts.
    monkeypatch.setattr(sm2, "available", lambda: False)
    anchors = tuple(base64.b64decode(der) for der in VECTORS["trustAnchors"])
    with pytest.raises(Sm2Unavailable) as caught:
        AuthTokenValidator(ValidatorSettings(origin=VECTORS["origin"], trust_anchors=anchors))
    assert caught.value.code == "SM2_UNAVAILABLE"
    AuthTokenValidator(ValidatorSettings(origin=VECTORS["origin"], trust_anchors=anchors[1:]))


async def test_a_token_signed_on_the_agents_skf_medium_validates_under_the_sm2_chain(
    skf_fixtures: SkfFixtures,
) -> None:
    origin, nonce = "https://etax.example.com", base64.b64encode(bytes(range(32))).decode()
    driver = SkfDriver([skf_fixtures.library])
    try:
        token = driver.find_token(token_id=skf_fixtures.token_id("sm2-agency"))
        data = signed_data(origin, nonce, SignatureAlgorithm.SM2SM3)
        with Pin(skf_fixtures.medium("sm2-agency").pin) as pin:
            cert_id = bytes.fromhex(skf_fixtures.cert("xinda-sm2").cert_id)
            signature = driver.sign(token, cert_id, pin, data, SignatureAlgorithm.SM2SM3)
    finally:
        driver.close()
    der = skf_fixtures.certificate_der("xinda-sm2")
    settings = ValidatorSettings.from_files(origin, [skf_fixtures.root_ca], [skf_fixtures.issuing_ca], revocation="off")
    assert load_certificates(skf_fixtures.root_ca.read_bytes())
    result = await AuthTokenValidator(settings).validate(
        auth_token(base64.b64encode(der).decode(), SignatureAlgorithm.SM2SM3, signature), nonce
    )
    assert result.taxpayer_id is not None and result.taxpayer_id.value == skf_fixtures.cert("xinda-sm2").taxpayer_id


def _check_token(tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    vector = next(v for v in VECTORS["vectors"] if v["name"] == name)
    (tmp_path / "token.json").write_text(json.dumps(vector["token"]), encoding="utf-8")
    anchors = []
    for index, der in enumerate(VECTORS["trustAnchors"]):
        anchors += ["--trust-anchor", str(tmp_path / f"anchor-{index}.der")]
        (tmp_path / f"anchor-{index}.der").write_bytes(base64.b64decode(der))
    (tmp_path / "ca.der").write_bytes(base64.b64decode(VECTORS["intermediates"][0]))
    command = [sys.executable, "-m", "cert_agent.verifier", "check-token", "--token", str(tmp_path / "token.json"),
               "--origin", VECTORS["origin"], "--nonce", VECTORS["nonce"], *anchors,
               "--intermediate", str(tmp_path / "ca.der"), "--no-revocation", "--at", VECTORS["at"]]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_check_token_validates_an_sm2_token_and_names_its_algorithm(tmp_path: Path) -> None:
    valid = _check_token(tmp_path, "sm2-valid")
    assert valid.returncode == 0, valid.stderr + valid.stdout
    assert "算法 (algorithm): SM2SM3" in valid.stdout and "纳税人识别号: 91370202MA3C4Q7X1M" in valid.stdout
    wrong_id = _check_token(tmp_path, "sm2-empty-id")
    assert wrong_id.returncode == 1 and wrong_id.stdout.strip().endswith("SM2_WRONG_ID")
