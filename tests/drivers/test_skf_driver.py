"""The SKF driver on the project's software SKF device (``softskf/``, a real shared library over
libcrypto, loaded by ctypes as a vendor's would be). SM2 signatures are checked by the ``openssl``
command, RSA ones by pyca/cryptography: neither is the code under test."""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import signed_data
from cert_agent.drivers.errors import (
    CertificateNotFound,
    DeviceRemoved,
    MechanismNotSupported,
    PinIncorrect,
    PinLocked,
    PinPolicyViolation,
    SkfGarbage,
    TokenNotPresent,
)
from cert_agent.drivers.factory import open_driver
from cert_agent.drivers.models import PinState, Token
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.skf import SkfDriver
from cert_agent.drivers.skf.library import SkfLibrary
from softhsm_fixtures import Fixtures
from softhsm_fixtures.skf_build import SkfFixtures
from tests.harness.sm2 import sm2_verifies

ORIGIN = "https://etax.example.com"
NONCE = "n" * 44


@pytest.fixture
def skf(skf_fixtures: SkfFixtures) -> Iterator[SkfDriver]:
    driver = SkfDriver([skf_fixtures.library])
    yield driver
    driver.close()


@pytest.fixture
def fresh_skf(fresh_skf_fixtures: SkfFixtures) -> Iterator[SkfDriver]:
    driver = SkfDriver([fresh_skf_fixtures.library])
    yield driver
    driver.close()


def _token(driver: SkfDriver, fixtures: SkfFixtures, name: str) -> Token:
    return driver.find_token(token_id=fixtures.token_id(name))


def test_each_application_of_each_device_is_a_token_with_the_devices_own_pin_count(
    skf: SkfDriver, skf_fixtures: SkfFixtures
) -> None:
    tokens = {t.token_id: t for t in skf.tokens()}
    assert set(tokens) == {skf_fixtures.token_id(m.name) for m in skf_fixtures.media}
    ukey = tokens[skf_fixtures.token_id("sm2-ukey")]
    assert (ukey.label, ukey.medium.value, ukey.slot_tag) == ("税务UKey 海润贸易 SM2", "税务UKey", "SM2")
    assert (ukey.pin.state, ukey.pin.tries_left, ukey.pin.max_tries) == (PinState.OK, 6, 6)
    default = tokens[skf_fixtures.token_id("sm2-default-pin")]
    assert default.pin.state is PinState.TO_BE_CHANGED and default.pin.is_default is True
    assert tokens[skf_fixtures.token_id("sm2-locked")].pin.state is PinState.LOCKED


def test_a_containers_sm2_certificate_is_listed_with_its_taxpayer_and_algorithm(
    skf: SkfDriver, skf_fixtures: SkfFixtures
) -> None:
    (cert,) = skf.certificates(_token(skf, skf_fixtures, "sm2-ukey"))
    assert cert.cert_id == skf_fixtures.cert("hairun-sm2").cert_id and cert.object_label == "SM2CONTAINER0002"
    assert cert.info is not None and cert.has_private_key and cert.der == skf_fixtures.certificate_der("hairun-sm2")
    assert (cert.info.key_type, cert.info.curve, cert.info.algorithm) == ("SM2", "sm2", "SM2SM3")
    assert (
        cert.info.taxpayer_id is not None and cert.info.taxpayer_id.value == skf_fixtures.cert("hairun-sm2").taxpayer_id
    )
    assert cert.info.to_dict()["algorithm"] == "SM2SM3"


def test_an_sm2_signature_verifies_with_openssl_at_the_default_id_and_not_at_the_empty_one(
    skf: SkfDriver, skf_fixtures: SkfFixtures
) -> None:
    token = _token(skf, skf_fixtures, "sm2-ukey")
    data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
    assert data == hashlib.new("sm3", ORIGIN.encode()).digest() + hashlib.new("sm3", NONCE.encode()).digest()
    cert_id = bytes.fromhex(skf_fixtures.cert("hairun-sm2").cert_id)
    signature = skf.sign(token, cert_id, Pin(skf_fixtures.medium("sm2-ukey").pin), data, SignatureAlgorithm.SM2SM3)
    assert signature[0] == 0x30  # DER SEQUENCE {r, s}
    der = skf_fixtures.certificate_der("hairun-sm2")
    assert sm2_verifies(der, data, signature)
    assert not sm2_verifies(der, data, signature, distid="distid:")  # OpenSSL's empty ID is another Z
    assert not sm2_verifies(der, data[:-1] + b"\x00", signature)


def test_an_rsa_container_signs_rs256_with_pkcs1_v15(skf: SkfDriver, skf_fixtures: SkfFixtures) -> None:
    token = _token(skf, skf_fixtures, "sm2-two-containers")
    names = sorted(c.object_label for c in skf.certificates(token))
    assert names == ["RSACONTAINER0001", "SM2CONTAINER0002"]
    data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.RS256)
    cert = skf_fixtures.cert("shuangzheng-skf-rsa")
    pin = Pin(skf_fixtures.medium("sm2-two-containers").pin)
    signature = skf.sign(token, bytes.fromhex(cert.cert_id), pin, data, SignatureAlgorithm.RS256)
    public_key = x509.load_der_x509_certificate(skf_fixtures.certificate_der(cert.name)).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # raises if wrong


def test_an_algorithm_the_container_cannot_make_is_refused(skf: SkfDriver, skf_fixtures: SkfFixtures) -> None:
    token = _token(skf, skf_fixtures, "sm2-two-containers")
    pin = Pin(skf_fixtures.medium("sm2-two-containers").pin)
    sm2 = bytes.fromhex(skf_fixtures.cert("shuangzheng-sm2").cert_id)
    with pytest.raises(MechanismNotSupported):
        skf.sign(token, sm2, pin, b"x" * 64, SignatureAlgorithm.ES256)
    with pytest.raises(CertificateNotFound):
        skf.sign(token, b"NOSUCHCONTAINER", pin, b"x" * 64, SignatureAlgorithm.SM2SM3)


def test_wrong_pins_count_down_with_the_devices_count_to_the_lock_and_then_the_right_one_is_refused(
    fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures
) -> None:
    token = _token(fresh_skf, fresh_skf_fixtures, "sm2-ukey")
    told = []
    for _ in range(5):
        with pytest.raises(PinIncorrect) as wrong:
            fresh_skf.verify_pin(token, Pin("000000"))
        told.append(wrong.value.tries_left)
    assert told == [5, 4, 3, 2, 1]
    assert fresh_skf.pin_status(token).state is PinState.FINAL_TRY
    with pytest.raises(PinLocked):
        fresh_skf.verify_pin(token, Pin("000000"))  # the device's count reached 0
    with pytest.raises(PinLocked):
        fresh_skf.verify_pin(token, Pin(fresh_skf_fixtures.medium("sm2-ukey").pin))
    assert fresh_skf_fixtures.store.pin_state("dev-sm2-ukey", "SM2")["remain"] == "0"


def test_the_device_itself_refuses_the_right_pin_once_locked(fresh_skf_fixtures: SkfFixtures) -> None:
    # Past the driver (which never presents a PIN to a locked device): the device's own answer.
    lib = SkfLibrary(fresh_skf_fixtures.library)
    with lib.device("dev-sm2-locked") as device, lib.application(device, "SM2") as app:
        retries = ctypes.c_uint32(9)
        code = lib._calls["SKF_VerifyPIN"](app, 1, b"Lk2026sm2", ctypes.byref(retries))
    assert code == 0x0A000025  # SAR_PIN_LOCKED


def test_a_right_pin_restores_the_count(fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures) -> None:
    token = _token(fresh_skf, fresh_skf_fixtures, "sm2-ukey")
    with pytest.raises(PinIncorrect):
        fresh_skf.verify_pin(token, Pin("000000"))
    assert fresh_skf.pin_status(token).state is PinState.COUNT_LOW
    fresh_skf.verify_pin(token, Pin(fresh_skf_fixtures.medium("sm2-ukey").pin))
    assert fresh_skf.pin_status(token).tries_left == 6


def test_a_pin_change_counts_a_wrong_old_pin_and_clears_the_default_flag(
    fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures
) -> None:
    token = _token(fresh_skf, fresh_skf_fixtures, "sm2-default-pin")
    with pytest.raises(PinIncorrect) as wrong:
        fresh_skf.change_pin(token, Pin("00000000"), Pin("Qd2026sm2"))
    assert wrong.value.tries_left == 5
    with pytest.raises(PinPolicyViolation):
        fresh_skf.change_pin(token, Pin("12345678"), Pin("123"))  # refused before the device is asked
    fresh_skf.change_pin(token, Pin("12345678"), Pin("Qd2026sm2"))
    status = fresh_skf.pin_status(token)
    assert (status.state, status.is_default, status.tries_left) == (PinState.OK, False, 6)
    fresh_skf.verify_pin(token, Pin("Qd2026sm2"))
    with pytest.raises(PinIncorrect):
        fresh_skf.verify_pin(token, Pin("12345678"))


def test_a_device_pulled_out_is_not_present_and_found_again_when_plugged_back(
    fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures
) -> None:
    token = _token(fresh_skf, fresh_skf_fixtures, "sm2-ukey")
    fresh_skf_fixtures.store.pull_out("dev-sm2-ukey")
    assert token.token_id not in {t.token_id for t in fresh_skf.tokens()}
    with pytest.raises((TokenNotPresent, DeviceRemoved)):
        fresh_skf.verify_pin(token, Pin(fresh_skf_fixtures.medium("sm2-ukey").pin))
    fresh_skf_fixtures.store.plug_in("dev-sm2-ukey")
    fresh_skf.verify_pin(token, Pin(fresh_skf_fixtures.medium("sm2-ukey").pin))


def test_a_device_removed_while_connected_answers_device_removed(fresh_skf_fixtures: SkfFixtures) -> None:
    lib = SkfLibrary(fresh_skf_fixtures.library)
    with lib.device("dev-sm2-ukey") as device, lib.application(device, "SM2") as app:
        fresh_skf_fixtures.store.pull_out("dev-sm2-ukey")
        maximum, remain, flag = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.create_string_buffer(8)
        code = lib._calls["SKF_GetPINInfo"](app, 1, ctypes.byref(maximum), ctypes.byref(remain), flag)
    assert code == 0x0A000023  # SAR_DEVICE_REMOVED


@pytest.mark.parametrize("width", ["4", "8"])
def test_the_default_pin_flag_is_read_whether_the_device_writes_a_4_or_8_byte_bool(
    skf: SkfDriver, skf_fixtures: SkfFixtures, monkeypatch: pytest.MonkeyPatch, width: str
) -> None:
    monkeypatch.setenv("SOFTSKF_BOOL_BYTES", width)
    statuses = {t.token_id: t.pin.is_default for t in skf.tokens()}
    assert statuses[skf_fixtures.token_id("sm2-default-pin")] is True
    assert statuses[skf_fixtures.token_id("sm2-ukey")] is False


def test_a_certificate_of_garbage_length_costs_that_container_only(
    fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures
) -> None:
    fresh_skf_fixtures.store.misbehave("dev-sm2-ukey", "oversize-length")
    (cert,) = fresh_skf.certificates(_token(fresh_skf, fresh_skf_fixtures, "sm2-ukey"))
    assert cert.info is None and isinstance(cert.error, SkfGarbage)
    assert fresh_skf.certificates(_token(fresh_skf, fresh_skf_fixtures, "sm2-agency"))[0].info is not None


def test_a_short_certificate_is_listed_as_unparsable(fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures) -> None:
    fresh_skf_fixtures.store.misbehave("dev-sm2-ukey", "short-cert")
    (cert,) = fresh_skf.certificates(_token(fresh_skf, fresh_skf_fixtures, "sm2-ukey"))
    assert cert.info is None and cert.error is not None and cert.error.code == "CERTIFICATE_UNPARSABLE"


def test_an_all_zero_signature_is_garbage_not_a_signature(
    fresh_skf: SkfDriver, fresh_skf_fixtures: SkfFixtures
) -> None:
    token = _token(fresh_skf, fresh_skf_fixtures, "sm2-ukey")
    fresh_skf_fixtures.store.misbehave("dev-sm2-ukey", "zero-signature")
    cert_id = bytes.fromhex(fresh_skf_fixtures.cert("hairun-sm2").cert_id)
    with pytest.raises(SkfGarbage):
        fresh_skf.sign(
            token, cert_id, Pin(fresh_skf_fixtures.medium("sm2-ukey").pin), b"d" * 64, SignatureAlgorithm.SM2SM3
        )


def test_a_library_whose_device_list_is_garbage_costs_only_its_own_media(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    fresh_skf_fixtures.store.misbehave("dev-sm2-ukey", "bad-name-list")
    both = open_driver([fixtures.module, fresh_skf_fixtures.library])
    try:
        modules = {t.module for t in both.tokens()}
    finally:
        both.close()
    assert modules == {fixtures.module}  # SoftHSM2's tokens still listed; the SKF library's list refused


def test_pkcs11_and_skf_media_are_served_by_one_driver_set(fixtures: Fixtures, skf_fixtures: SkfFixtures) -> None:
    both = open_driver([fixtures.module, skf_fixtures.library])
    try:
        by_module = {t.module for t in both.tokens()}
        token = both.find_token(token_id=skf_fixtures.token_id("sm2-agency"))
        data = signed_data(ORIGIN, NONCE, SignatureAlgorithm.SM2SM3)
        cert = skf_fixtures.cert("xinda-sm2")
        signature = both.sign(
            token,
            bytes.fromhex(cert.cert_id),
            Pin(skf_fixtures.medium("sm2-agency").pin),
            data,
            SignatureAlgorithm.SM2SM3,
        )
    finally:
        both.close()
    assert by_module == {fixtures.module, skf_fixtures.library}
    assert sm2_verifies(skf_fixtures.certificate_der("xinda-sm2"), data, signature)
