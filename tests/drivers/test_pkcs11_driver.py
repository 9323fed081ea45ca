"""The PKCS#11 driver against real SoftHSM2 tokens."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from cert_agent.agent.tokens.pins import PinAccounting
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.certificate import parse_certificate
from cert_agent.drivers.errors import (
    CertificateUnparsable,
    MechanismNotSupported,
    PinIncorrect,
    PinLocked,
    PinPolicyViolation,
    PrivateKeyNotFound,
    TokenNotPresent,
)
from cert_agent.drivers.models import Medium, PinState, Token
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from cert_agent.drivers.pkcs11.mechanisms import plan_signature
from softhsm_fixtures import Fixtures
from tests.harness.signatures import verify_signature

MESSAGE = b"H(origin) || H(nonce) stands in here"


def _token(driver: Pkcs11Driver, fixtures: Fixtures, name: str) -> Token:
    return driver.find_token(label=fixtures.token(name).label)


def _cert_id(fixtures: Fixtures, name: str) -> bytes:
    return bytes.fromhex(fixtures.cert(name).cert_id)


def verify(fixtures: Fixtures, cert_name: str, signature: bytes, algorithm: SignatureAlgorithm) -> None:
    """Independent check with pyca/cryptography: raises InvalidSignature when it does not verify."""
    verify_signature(fixtures.certificate(cert_name).public_key(), signature, MESSAGE, algorithm.value)


# --- listing -------------------------------------------------------------------------------


def test_lists_every_provisioned_token_with_its_medium(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    tokens = {t.label: t for t in driver.tokens()}
    assert set(tokens) == {t.label for t in fixtures.tokens}
    assert tokens[fixtures.token("ukey").label].medium is Medium.TAX_UKEY
    assert tokens[fixtures.token("golden-tax-disk").label].medium is Medium.GOLDEN_TAX_DISK
    assert tokens[fixtures.token("tax-control-disk").label].medium is Medium.TAX_CONTROL_DISK
    ukey = tokens[fixtures.token("ukey").label]
    assert ukey.serial == fixtures.token("ukey").serial
    assert ukey.manufacturer == "SoftHSM project" and ukey.model


def test_pin_state_comes_from_the_token_flags(fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures) -> None:
    # fresh media: on the shared ones, other tests' wrong PINs leave SoftHSM2's count-low flag
    assert _token(fresh_driver, fresh_fixtures, "locked").pin_state is PinState.LOCKED
    assert _token(fresh_driver, fresh_fixtures, "final-try").pin_state is PinState.FINAL_TRY
    assert _token(fresh_driver, fresh_fixtures, "golden-tax-disk").pin_state is PinState.OK


def test_certificates_are_parsed_with_taxpayer_id(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    (cert,) = driver.certificates(_token(driver, fixtures, "golden-tax-disk"))
    assert cert.info is not None and cert.error is None
    assert cert.has_private_key
    assert cert.cert_id == fixtures.cert("lanhai-rsa").cert_id
    assert cert.info.subject_cn == "青岛蓝海制造有限公司"
    assert cert.info.taxpayer_id is not None
    assert cert.info.taxpayer_id.value == fixtures.cert("lanhai-rsa").taxpayer_id
    assert cert.info.taxpayer_id.is_valid
    assert (cert.info.key_type, cert.info.key_size) == ("RSA", 2048)
    assert "digital_signature" in cert.info.key_usage
    assert cert.info.extended_key_usage == ("clientAuth",)
    assert "国家税务总局测试签发CA" in cert.info.issuer


def test_token_with_two_certificates_lists_both(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    certs = driver.certificates(_token(driver, fixtures, "two-certs"))
    assert {c.cert_id for c in certs} == {c.cert_id for c in fixtures.token("two-certs").certs}
    assert {c.info.key_type for c in certs if c.info} == {"EC", "RSA"}


def test_a_certificate_of_a_version_past_v3_is_unparsable_not_an_error(fixtures: Fixtures) -> None:
    der = fixtures.certificate("hairun-ec").public_bytes(Encoding.DER)
    version = der.index(b"\xa0\x03\x02\x01\x02") + 4  # [0] INTEGER 2: v3
    with pytest.raises(CertificateUnparsable):  # cryptography raises InvalidVersion here, not ValueError
        parse_certificate(der[:version] + b"\x12" + der[version + 1 :])


def test_unparsable_certificate_is_reported_and_the_others_still_listed(
    driver: Pkcs11Driver, fixtures: Fixtures
) -> None:
    certs = {c.cert_id: c for c in driver.certificates(_token(driver, fixtures, "variants"))}
    broken = certs[fixtures.cert("unparsable").cert_id]
    assert broken.info is None and isinstance(broken.error, CertificateUnparsable)
    assert broken.error.to_dict()["code"] == "CERTIFICATE_UNPARSABLE"
    assert certs[fixtures.cert("p384").cert_id].info is not None
    assert len(certs) == len(fixtures.token("variants").certs)
    every = driver.all_certificates()
    assert {t.label for t in fixtures.tokens} == {c.token.label for c in every}


def test_certificate_without_private_key_is_marked_and_cannot_sign(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    token = _token(driver, fixtures, "variants")
    listed = {c.cert_id: c for c in driver.certificates(token)}
    assert not listed[fixtures.cert("no-private-key").cert_id].has_private_key
    with pytest.raises(PrivateKeyNotFound) as caught:
        driver.sign(token, _cert_id(fixtures, "no-private-key"), Pin("135790"), MESSAGE, SignatureAlgorithm.ES256)
    assert caught.value.code == "PRIVATE_KEY_NOT_FOUND"


def test_missing_or_unloadable_module_is_a_problem_and_other_modules_still_list(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_bytes(b"this is no shared object")
    driver = Pkcs11Driver(["/nonexistent/libvendor-ukey.so", str(not_a_module), fixtures.module])
    try:
        assert [p.module for p in driver.problems] == ["/nonexistent/libvendor-ukey.so", str(not_a_module)]
        assert {p.error.code for p in driver.problems} == {"MODULE_LOAD_FAILED"}
        assert len(driver.tokens()) == len(fixtures.tokens)
    finally:
        driver.close()


# --- signing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert_name", "algorithm"),
    [
        ("hairun-ec", SignatureAlgorithm.ES256),
        ("p384", SignatureAlgorithm.ES384),
        ("lanhai-rsa", SignatureAlgorithm.RS256),
        ("lanhai-rsa", SignatureAlgorithm.RS384),
        ("lanhai-rsa", SignatureAlgorithm.RS512),
        ("lanhai-rsa", SignatureAlgorithm.PS256),
        ("lanhai-rsa", SignatureAlgorithm.PS384),
        ("lanhai-rsa", SignatureAlgorithm.PS512),
    ],
)
def test_signature_made_on_the_token_verifies_against_the_certificate(
    driver: Pkcs11Driver, fixtures: Fixtures, cert_name: str, algorithm: SignatureAlgorithm
) -> None:
    fixture_token = fixtures.token_of(cert_name)
    token = driver.find_token(label=fixture_token.label)
    signature = driver.sign(token, _cert_id(fixtures, cert_name), Pin(fixture_token.pin), MESSAGE, algorithm)
    verify(fixtures, cert_name, signature, algorithm)
    with pytest.raises(InvalidSignature):
        verify_other = bytearray(signature)
        verify_other[-1] ^= 1
        verify(fixtures, cert_name, bytes(verify_other), algorithm)


def test_ecdsa_is_hashed_on_the_host_because_softhsm_has_no_combined_mechanism(
    driver: Pkcs11Driver, fixtures: Fixtures
) -> None:
    mechanisms = driver.mechanisms(_token(driver, fixtures, "ukey"))
    ecdsa = plan_signature(SignatureAlgorithm.ES256, MESSAGE, mechanisms)
    rsa_plan = plan_signature(SignatureAlgorithm.RS256, MESSAGE, mechanisms)
    assert ecdsa is not None and ecdsa.hashed_on_host and ecdsa.mechanism_name == "CKM_ECDSA"
    assert rsa_plan is not None and not rsa_plan.hashed_on_host and rsa_plan.mechanism_name == "CKM_SHA256_RSA_PKCS"


def test_rsa_falls_back_to_host_hashing_when_the_combined_mechanism_is_missing() -> None:
    import PyKCS11

    plan = plan_signature(SignatureAlgorithm.RS256, MESSAGE, frozenset({PyKCS11.CKM_RSA_PKCS}))
    assert plan is not None and plan.hashed_on_host and plan.payload.startswith(bytes.fromhex("3031300d0609608648"))
    assert plan_signature(SignatureAlgorithm.PS256, MESSAGE, frozenset({PyKCS11.CKM_RSA_PKCS})) is None


def test_asking_an_ec_key_for_an_rsa_signature_is_refused(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    with pytest.raises(MechanismNotSupported):
        driver.sign(
            _token(driver, fixtures, "ukey"),
            _cert_id(fixtures, "hairun-ec"),
            Pin("112233"),
            MESSAGE,
            SignatureAlgorithm.RS256,
        )


def test_concurrent_signing_from_threads_on_several_tokens_all_succeeds(
    driver: Pkcs11Driver, fixtures: Fixtures
) -> None:
    jobs = [
        ("hairun-ec", SignatureAlgorithm.ES256),
        ("xinda-ec", SignatureAlgorithm.ES256),
        ("lanhai-rsa", SignatureAlgorithm.RS256),
        ("shuangzheng-ec", SignatureAlgorithm.ES256),
    ]
    failures: list[BaseException] = []

    def work(cert_name: str, algorithm: SignatureAlgorithm) -> None:
        fixture_token = fixtures.token_of(cert_name)
        try:
            token = driver.find_token(label=fixture_token.label)
            for _ in range(5):
                signature = driver.sign(
                    token, _cert_id(fixtures, cert_name), Pin(fixture_token.pin), MESSAGE, algorithm
                )
                verify(fixtures, cert_name, signature, algorithm)
                driver.verify_pin(token, Pin(fixture_token.pin))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=job) for job in jobs for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- PIN -----------------------------------------------------------------------------------


def test_right_pin_verifies_and_leaves_no_login_state(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    token = _token(driver, fixtures, "ukey")
    driver.verify_pin(token, Pin("112233"))
    # A second login would fail with CKR_USER_ALREADY_LOGGED_IN if the first had lingered;
    # the driver recovers from that case, so check the session state through PyKCS11 itself.
    import PyKCS11

    lib = PyKCS11.PyKCS11Lib().load(fixtures.module)
    try:
        session = lib.openSession(token.slot_id)
        assert session.getSessionInfo().state == PyKCS11.CKS_RO_PUBLIC_SESSION
        session.closeSession()
    finally:
        lib.unload()


def test_wrong_pin_says_how_many_tries_are_left(fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures) -> None:
    # The driver reports what the medium says (SoftHSM2: nothing); the daemon's accounting, fed
    # by the known limit, says how many are left, and a right PIN starts the count again.
    pins = PinAccounting(configured_limit=10, origins=1)
    token = _token(fresh_driver, fresh_fixtures, "ukey")
    told = []
    for pin in ("000000", "000001", "112233", "000000"):
        try:
            fresh_driver.verify_pin(token, Pin(pin))
            pins.right_pin(token.token_id)
        except PinIncorrect as exc:
            assert exc.tries_left is None  # SoftHSM2's flags say nothing of the count
            told.append(pins.wrong_pin(token, "https://etax.example", exc))
    assert [error.to_dict()["triesLeft"] for error in told] == [9, 8, 9]
    assert "9" in told[0].message


def test_wrong_pin_on_final_try_token_reports_one_try_left(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    with pytest.raises(PinIncorrect) as caught:
        driver.verify_pin(_token(driver, fixtures, "final-try"), Pin("000000"))
    assert caught.value.tries_left == 1


def test_locked_token_says_so_without_a_pin_being_tried(driver: Pkcs11Driver, fixtures: Fixtures) -> None:
    token = _token(driver, fixtures, "locked")
    for pin in ("343434", "000000"):  # the right PIN too: a locked medium is not asked
        with pytest.raises(PinLocked) as caught:
            driver.verify_pin(token, Pin(pin))
        assert caught.value.code == "PIN_LOCKED" and "锁定" in caught.value.message


def test_a_driver_alone_does_not_guess_the_tries_left(fresh_fixtures: Fixtures) -> None:
    driver = Pkcs11Driver([fresh_fixtures.module])
    try:
        with pytest.raises(PinIncorrect) as caught:
            driver.verify_pin(driver.find_token(label=fresh_fixtures.token("ukey").label), Pin("000000"))
        assert caught.value.tries_left is None and "triesLeft" not in caught.value.to_dict()
    finally:
        driver.close()


def _pkcs11_tool_login_ok(fixtures: Fixtures, label: str, pin: str) -> bool:
    """Check a PIN through OpenSC's pkcs11-tool: a path independent of the driver."""
    result = subprocess.run(
        [
            "pkcs11-tool",
            "--module",
            fixtures.module,
            "--token-label",
            label,
            "--login",
            "--pin",
            pin,
            "--list-objects",
            "--type",
            "privkey",
        ],
        env=fixtures.env.environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def test_changed_pin_replaces_the_old_one_as_seen_by_pkcs11_tool(fresh_fixtures: Fixtures) -> None:
    label = fresh_fixtures.token("initial-pin").label
    driver = Pkcs11Driver([fresh_fixtures.module])
    try:
        driver.change_pin(driver.find_token(label=label), Pin("88888888"), Pin("Nw2026ok"))
    finally:
        driver.close()
    assert _pkcs11_tool_login_ok(fresh_fixtures, label, "Nw2026ok")
    assert not _pkcs11_tool_login_ok(fresh_fixtures, label, "88888888")


def test_change_pin_with_wrong_old_pin_changes_nothing(fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures) -> None:
    label = fresh_fixtures.token("ukey").label
    with pytest.raises(PinIncorrect):
        fresh_driver.change_pin(fresh_driver.find_token(label=label), Pin("000000"), Pin("Nw2026ok"))
    fresh_driver.close()
    assert _pkcs11_tool_login_ok(fresh_fixtures, label, "112233")


def test_policy_refusal_never_reaches_the_token(fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures) -> None:
    real = fresh_driver.find_token(label=fresh_fixtures.token("initial-pin").label)
    # A token reference to a module that is not loaded: touching it would fail with
    # MODULE_LOAD_FAILED, so PIN_POLICY proves that the policy ran first.
    ghost = Token("/not/loaded.so", 0, "ghost", "0", "", "", Medium.OTHER)
    for token in (ghost, real):
        with pytest.raises(PinPolicyViolation) as caught:
            fresh_driver.change_pin(token, Pin("88888888"), Pin("88888888"))
        assert caught.value.rule == "same_as_old"
    assert fresh_driver.find_token(label=real.label).pin_state is PinState.OK  # no failed attempt
    fresh_driver.close()
    assert _pkcs11_tool_login_ok(fresh_fixtures, real.label, "88888888")


def test_no_pin_reaches_logs_or_error_text(
    fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    token = _token(fresh_driver, fresh_fixtures, "initial-pin")
    cert_id = _cert_id(fresh_fixtures, "chuxin-ec")
    attempts: list[Callable[[], object]] = [
        lambda: fresh_driver.verify_pin(token, Pin("Wr0ngPin77")),
        lambda: fresh_driver.sign(token, cert_id, Pin("Wr0ngPin78"), MESSAGE, SignatureAlgorithm.ES256),
        lambda: fresh_driver.change_pin(token, Pin("88888888"), Pin("Sh0rt")),
        lambda: fresh_driver.change_pin(token, Pin("Wr0ngPin79"), Pin("Good2026pin")),
        lambda: fresh_driver.sign(token, cert_id, Pin("88888888"), MESSAGE, SignatureAlgorithm.ES256),
        lambda: fresh_driver.change_pin(token, Pin("88888888"), Pin("Secret2026x")),
        lambda: fresh_driver.verify_pin(token, Pin("Secret2026x")),
    ]
    for attempt in attempts:
        try:
            attempt()
        except CertAgentError as exc:
            texts += [str(exc), repr(exc), repr(exc.to_dict()), exc.message]
    everything = caplog.text + "\n".join(texts)
    assert "PIN_INCORRECT" in everything  # the failures really happened and were logged
    for secret in ("Wr0ngPin77", "Wr0ngPin78", "Wr0ngPin79", "Sh0rt", "Good2026pin", "Secret2026x", "88888888"):
        assert secret not in everything


# --- removal -------------------------------------------------------------------------------


def test_removed_token_is_reported_and_the_others_still_listed(
    fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures
) -> None:
    token = _token(fresh_driver, fresh_fixtures, "ukey")
    fresh_fixtures.env.pull_out(token.serial)
    with pytest.raises(TokenNotPresent):
        fresh_driver.sign(
            token, _cert_id(fresh_fixtures, "hairun-ec"), Pin("112233"), MESSAGE, SignatureAlgorithm.ES256
        )
    with pytest.raises(TokenNotPresent):
        fresh_driver.certificates(token)
    remaining = {t.label for t in fresh_driver.tokens()}
    assert remaining == {t.label for t in fresh_fixtures.tokens} - {token.label}
    golden = _token(fresh_driver, fresh_fixtures, "golden-tax-disk")
    assert fresh_driver.sign(
        golden, _cert_id(fresh_fixtures, "lanhai-rsa"), Pin("556677"), MESSAGE, SignatureAlgorithm.RS256
    )


def test_rescan_shows_a_token_plugged_back_in(fresh_driver: Pkcs11Driver, fresh_fixtures: Fixtures) -> None:
    serial = fresh_fixtures.token("ukey").serial
    fresh_fixtures.env.pull_out(serial)
    fresh_driver.rescan()
    assert serial not in {t.serial for t in fresh_driver.tokens()}
    fresh_fixtures.env.plug_in(serial)
    assert serial not in {t.serial for t in fresh_driver.tokens()}  # SoftHSM2 needs C_Initialize to see it
    fresh_driver.rescan()
    token = fresh_driver.find_token(serial=serial)
    fresh_driver.verify_pin(token, Pin("112233"))
