"""SM2 over a vendor's PKCS#11 module: keys of a vendor-defined type (as Chinese UKeys' SM2 keys
are). Without the media catalog's values for the module, such a key's certificate is listed
KEY_UNUSABLE and the token's other keys still sign; with them (key type, mechanism, signature
format), it signs SM2SM3, checked by the openssl command.

The module is a test double (``tests/doubles/vendorkeys/``): SoftHSM2 but for the vendor's key type
and mechanism; no PKCS#11 module with SM2 exists here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.webeid import signed_data
from cert_agent.drivers.catalog import CATALOG_ENV, default_catalog
from cert_agent.drivers.errors import KeyUnusable, MechanismNotSupported, PinIncorrect
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.pki import Subject
from softhsm_fixtures.sm2pki import sm2_issuing_ca, sm2_root, sm2_taxpayer
from softhsm_fixtures.softhsm import provisioning_library, store_certificate, user_session
from softhsm_fixtures.taxpayers import TAXPAYERS, CertSpec, TokenSpec
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, connect, running_agent, verify_auth_token
from tests.harness.sm2 import sm2_verifies
from tests.paths import TESTS

PIN = "246813"
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the double")


@pytest.fixture
def vendor_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Fixtures]]:
    """The double over a SoftHSM2 token whose "vendor-sm2-key" is an SM2 certificate (openssl,
    the SM2 test PKI) with its stand-in key, beside a plain ECDSA key and certificate."""
    spec = TokenSpec(
        "vendor", "税务UKey 厂商密钥", PIN, (CertSpec("vendor-sm2-key", "hairun"), CertSpec("plain-ec", "hairun"))
    )
    fixtures = build_fixtures(tmp_path / "fixtures", tokens=(spec,))
    cert_id = bytes.fromhex(fixtures.cert("vendor-sm2-key").cert_id)
    pki = tmp_path / "sm2"
    ca = sm2_issuing_ca(pki, sm2_root(pki))
    hairun = TAXPAYERS["hairun"]
    issued = sm2_taxpayer(pki, ca, "vendor-sm2", Subject(hairun.name, hairun.taxpayer_id), 7)
    _replace_certificate(fixtures, spec, cert_id, issued.certificate_der)
    keys = tmp_path / "vendor-keys"
    keys.mkdir()
    shutil.copyfile(issued.key, keys / f"{cert_id.hex()}.pem")
    library = tmp_path / "libvendorkeys.so"
    source = TESTS / "doubles" / "vendorkeys" / "vendor_keys_pkcs11.c"
    subprocess.run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(library),
                    str(source), "-ldl", "-lcrypto", "-lpthread"], check=True)  # fmt: skip
    monkeypatch.setenv("SOFTHSM2_CONF", str(fixtures.env.conf))
    monkeypatch.setenv("VENDOR_KEYS_REAL_MODULE", fixtures.module)
    monkeypatch.setenv("VENDOR_KEYS_SM2_DIR", str(keys))
    yield str(library), fixtures


def _replace_certificate(fixtures: Fixtures, spec: TokenSpec, cert_id: bytes, der: bytes) -> None:
    import PyKCS11

    with provisioning_library(fixtures.module, fixtures.env) as lib, user_session(lib, spec.label, spec.pin) as (s, _):
        for found in s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE), (PyKCS11.CKA_ID, cert_id)]):
            s.destroyObject(found)
        store_certificate(s, der, cert_id, "青岛海润贸易有限公司 vendor-sm2-key")


@pytest.fixture
def catalog_with_sm2(
    vendor_module: tuple[str, Fixtures], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """An operator's own catalog entry for the module: TASS's SM2 values (xipki/ipkcs11wrapper,
    vendor.conf: CKK_SM2 0x80000004, CKM_SM3_SM2 0x80008100)."""
    entry = {
        "id": "vendor-sm2-double", "name": "a vendor's PKCS#11 module with SM2 (test double)", "medium": "tax_ukey",
        "interface": "pkcs11", "test": True, "manufacturer": None, "model": None, "atrs": [],
        "modules": {"linux": [vendor_module[0]]}, "pinMaxTries": None, "reinitForNewTokens": True,
        "loadByDefault": False, "notes": "",
        "source": "https://github.com/xipki/ipkcs11wrapper (src/main/resources/org/xipki/pkcs11/wrapper/vendor.conf)",
        "sm2": {"keyType": "0x80000004", "mechanism": "0x80008100", "signature": "raw"},
    }  # fmt: skip
    path = tmp_path / "vendor-catalog.json"
    path.write_text(json.dumps({"version": 1, "entries": [entry]}), encoding="utf-8")
    monkeypatch.setenv(CATALOG_ENV, str(path))
    default_catalog.cache_clear()
    yield
    monkeypatch.delenv(CATALOG_ENV)
    default_catalog.cache_clear()


def test_a_vendor_key_type_marks_its_certificate_unusable_and_the_token_still_lists(
    vendor_module: tuple[str, Fixtures],
) -> None:
    library, fixtures = vendor_module
    driver = Pkcs11Driver([library])
    try:
        (token,) = driver.tokens()
        certificates = {c.cert_id: c for c in driver.certificates(token)}
        vendor = certificates[fixtures.cert("vendor-sm2-key").cert_id]
        plain = certificates[fixtures.cert("plain-ec").cert_id]
        assert vendor.info is not None and vendor.info.key_type == "SM2"
        assert vendor.error is not None and vendor.error.code == "KEY_UNUSABLE"
        assert plain.info is not None and plain.error is None
        with pytest.raises(MechanismNotSupported):
            driver.sign(token, vendor.object_id, Pin(PIN), b"d" * 64, SignatureAlgorithm.SM2SM3)
        with pytest.raises(KeyUnusable):
            driver.sign(token, vendor.object_id, Pin(PIN), b"d" * 64, SignatureAlgorithm.ES256)
        assert driver.sign(token, plain.object_id, Pin(PIN), b"d" * 64, SignatureAlgorithm.ES256)
    finally:
        driver.close()


def test_with_the_catalogs_values_the_vendor_key_signs_sm2_checked_by_openssl(
    vendor_module: tuple[str, Fixtures], catalog_with_sm2: None
) -> None:
    library, fixtures = vendor_module
    driver = Pkcs11Driver([library])
    try:
        (token,) = driver.tokens()
        vendor = next(c for c in driver.certificates(token) if c.cert_id == fixtures.cert("vendor-sm2-key").cert_id)
        assert vendor.error is None and vendor.info is not None and vendor.info.algorithm == "SM2SM3"
        data = signed_data("https://etax.example.com", NONCE, SignatureAlgorithm.SM2SM3)
        signature = driver.sign(token, vendor.object_id, Pin(PIN), data, SignatureAlgorithm.SM2SM3)
        with pytest.raises(PinIncorrect):
            driver.sign(token, vendor.object_id, Pin("000000"), data, SignatureAlgorithm.SM2SM3)
    finally:
        driver.close()
    assert signature[0] == 0x30 and sm2_verifies(vendor.der, data, signature)


async def test_the_agent_lists_such_a_token_and_signs_with_its_usable_key(vendor_module: tuple[str, Fixtures]) -> None:
    library, fixtures = vendor_module
    async with running_agent(fixtures, modules=(library,)) as agent, connect(agent) as client:
        (token,) = (await client.call("listCertificates"))["result"]["tokens"]
        errors = {c["certId"]: (c["error"] or {}).get("code") for c in token["certificates"]}
        assert errors == {
            fixtures.cert("vendor-sm2-key").cert_id: "KEY_UNUSABLE",
            fixtures.cert("plain-ec").cert_id: None,
        }
        vendor, plain = fixtures.cert("vendor-sm2-key").cert_id, fixtures.cert("plain-ec").cert_id
        refused = await client.call(
            "authenticate", tokenId=token["tokenId"], certId=vendor, pin=PIN, challengeNonce=NONCE
        )
        signed = await client.call(
            "authenticate", tokenId=token["tokenId"], certId=plain, pin=PIN, challengeNonce=NONCE
        )
    assert refused["error"]["code"] == "KEY_UNUSABLE"
    verify_auth_token(signed["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
    assert os.environ["VENDOR_KEYS_REAL_MODULE"] == fixtures.module


async def test_the_agent_logs_in_with_sm2_over_the_vendors_pkcs11_module(
    vendor_module: tuple[str, Fixtures], catalog_with_sm2: None
) -> None:
    library, fixtures = vendor_module
    vendor = fixtures.cert("vendor-sm2-key").cert_id
    async with running_agent(fixtures, modules=(library,)) as agent, connect(agent) as client:
        (token,) = (await client.call("listCertificates"))["result"]["tokens"]
        listed = next(c for c in token["certificates"] if c["certId"] == vendor)
        assert listed["error"] is None and listed["info"]["algorithm"] == "SM2SM3"
        reply = await client.call(
            "authenticate", tokenId=token["tokenId"], certId=vendor, pin=PIN, challengeNonce=NONCE
        )
    assert reply["result"]["authToken"]["algorithm"] == "SM2SM3"
    verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, NONCE)  # openssl at the default ID
