"""The test PKI and the SoftHSM2 tokens look like the tax authority's, variant by variant."""

from __future__ import annotations

import datetime as dt
import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cert_agent.common.taxpayer_id import is_valid_uscc
from softhsm_fixtures import Fixtures, load_fixtures

NOW = dt.datetime.now(dt.UTC)


def _load(path: os.PathLike[str]) -> x509.Certificate:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def test_chain_runs_from_taxpayer_certificate_through_issuing_ca_to_root(fixtures: Fixtures) -> None:
    root, issuing = _load(fixtures.root_ca), _load(fixtures.issuing_ca)
    leaf = fixtures.certificate("hairun-ec")
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(issuing)


def test_taxpayer_certificate_names_the_enterprise_and_a_valid_uscc(fixtures: Fixtures) -> None:
    leaf = fixtures.certificate("hairun-ec")
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    serial = str(leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value)
    assert cn == "青岛海润贸易有限公司"
    assert len(serial) == 18 and is_valid_uscc(serial)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None and cdp[0].full_name[0].value.endswith(".crl")


def test_variants_carry_exactly_their_defect(fixtures: Fixtures) -> None:
    issuing, untrusted = _load(fixtures.issuing_ca), _load(fixtures.untrusted_ca)
    assert fixtures.certificate("expired").not_valid_after_utc < NOW
    assert fixtures.certificate("not-yet-valid").not_valid_before_utc > NOW
    fixtures.certificate("untrusted").verify_directly_issued_by(untrusted)
    assert fixtures.certificate("untrusted").issuer != issuing.subject
    no_ds = fixtures.certificate("no-digital-signature").extensions.get_extension_for_class(x509.KeyUsage)
    assert not no_ds.value.digital_signature
    bad = fixtures.certificate("bad-check-character")
    assert not is_valid_uscc(str(bad.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value))
    rsa_key, ec_key = fixtures.certificate("lanhai-rsa").public_key(), fixtures.certificate("hairun-ec").public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048
    assert isinstance(ec_key, ec.EllipticCurvePublicKey) and ec_key.curve.name == "secp256r1"


def test_crl_is_signed_by_the_issuing_ca_and_lists_only_the_revoked_certificate(fixtures: Fixtures) -> None:
    crl = x509.load_der_x509_crl(fixtures.crl.read_bytes())
    issuing = _load(fixtures.issuing_ca)
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    revoked = fixtures.certificate("revoked").serial_number
    assert crl.get_revoked_certificate_by_serial_number(revoked) is not None
    assert crl.get_revoked_certificate_by_serial_number(fixtures.certificate("hairun-ec").serial_number) is None


def test_tokens_exist_for_each_medium_the_initial_pin_and_two_certificates(fixtures: Fixtures) -> None:
    labels = {t.label for t in fixtures.tokens}
    assert any(label.startswith("税务UKey") for label in labels)
    assert any(label.startswith("金税盘") for label in labels)
    assert any(label.startswith("税控盘") for label in labels)
    assert fixtures.token("initial-pin").pin == "88888888"
    assert len(fixtures.token("two-certs").certs) == 2
    assert all(len(t.label.encode()) <= 32 for t in fixtures.tokens)


def test_fixture_set_uses_its_own_softhsm_configuration(fixtures: Fixtures) -> None:
    conf = fixtures.env.conf.read_text()
    assert str(fixtures.env.token_dir) in conf
    assert fixtures.env.conf.is_relative_to(fixtures.root)
    assert os.environ["SOFTHSM2_CONF"] == str(fixtures.env.conf)


def test_manifest_reads_back_the_same_fixture_set(fixtures: Fixtures) -> None:
    again = load_fixtures(fixtures.root)
    assert again == fixtures


def test_no_taxpayer_or_ca_private_key_is_written_to_the_fixture_directory(fixtures: Fixtures) -> None:
    """Taxpayer keys never leave SoftHSM and CA keys stay in memory; the one key on disk is the
    OCSP responder's, which `openssl ocsp` must read to sign its answers."""
    for path in fixtures.root.rglob("*"):
        if path.is_file() and path.suffix in {".pem", ".json", ".crl", ".conf"} and path != fixtures.ocsp_responder_key:
            assert b"PRIVATE KEY" not in path.read_bytes(), path
