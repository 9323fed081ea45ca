"""A PKCS#11 token whose keys are of a vendor-defined type (as Chinese UKeys' SM2 keys are):
its certificates are still listed, the vendor one marked KEY_UNUSABLE, and its other keys sign.

The module is a test double (``tests/doubles/vendorkeys/``): SoftHSM2 in all but the key type it
reports for keys labelled "vendor-sm2"; no module with vendor key types exists here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.errors import KeyUnusable
from cert_agent.drivers.pin import Pin
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.taxpayers import CertSpec, TokenSpec
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, connect, running_agent, verify_auth_token
from tests.paths import TESTS

PIN = "246813"
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the double")


@pytest.fixture
def vendor_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Fixtures]]:
    spec = TokenSpec(
        "vendor", "税务UKey 厂商密钥", PIN, (CertSpec("vendor-sm2-key", "hairun"), CertSpec("plain-ec", "hairun"))
    )
    fixtures = build_fixtures(tmp_path / "fixtures", tokens=(spec,))
    library = tmp_path / "libvendorkeys.so"
    source = TESTS / "doubles" / "vendorkeys" / "vendor_keys_pkcs11.c"
    subprocess.run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(library),
                    str(source), "-ldl"], check=True)  # fmt: skip
    monkeypatch.setenv("SOFTHSM2_CONF", str(fixtures.env.conf))
    monkeypatch.setenv("VENDOR_KEYS_REAL_MODULE", fixtures.module)
    yield str(library), fixtures


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
        assert vendor.info is not None and vendor.error is not None and vendor.error.code == "KEY_UNUSABLE"
        assert plain.info is not None and plain.error is None
        with pytest.raises(KeyUnusable):
            driver.sign(token, vendor.object_id, Pin(PIN), b"d" * 64, SignatureAlgorithm.ES256)
        assert driver.sign(token, plain.object_id, Pin(PIN), b"d" * 64, SignatureAlgorithm.ES256)
    finally:
        driver.close()


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
