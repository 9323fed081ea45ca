"""The media catalog: data checked against its schema, and what the agent takes from it (the
modules it loads, a token's medium, the retry limit that makes "tries left" and "locked")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cert_agent.drivers.catalog import CATALOG_ENV, CatalogError, default_catalog, load_catalog
from cert_agent.drivers.models import Medium
from cert_agent.drivers.modules import default_modules
from softhsm_fixtures import Fixtures
from tests.harness.agent import certificate_of, connect, running_agent

TEST_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


def test_the_shipped_catalog_keeps_its_schema_and_cites_a_source_for_every_entry() -> None:
    catalog = load_catalog(Path("cert_agent/drivers/media.json"))
    assert catalog.entries
    for entry in catalog.entries:
        assert entry.source and (entry.test or entry.source.startswith("https://")), entry.id
    assert {e.id for e in catalog.entries if e.test} >= {"softhsm2", "tpm2-pkcs11", "test-virtual-ukey"}


def test_an_atr_matches_under_its_mask() -> None:
    catalog = load_catalog(Path("cert_agent/drivers/media.json"))
    varied = bytearray(TEST_ATR)
    varied[14:16] = b"\x12\x34"  # the masked bytes (a card serial) may be anything
    entry = catalog.for_atr(bytes(varied))
    assert entry is not None and entry.id == "test-virtual-ukey" and entry.medium is Medium.TAX_UKEY
    varied[0] = 0x3F
    assert catalog.for_atr(bytes(varied)) is None
    assert catalog.for_atr(TEST_ATR[:-1]) is None


@pytest.mark.parametrize(
    "atr",
    [  # the ePass2003 ATRs OpenSC's source lists: 2012, and 2022 initialised by OpenSC or by Feitian
        "3B9F958131FE9F006646530501001171DF00000390 0080",
        "3B9F958131FE9F006646530523002571DF00000390 0096",
        "3B9F958131FE9F006646530523002571DF00000000 0005",
    ],
)
def test_a_vendor_atr_from_a_public_source_names_its_driver(atr: str) -> None:
    entry = load_catalog(Path("cert_agent/drivers/media.json")).for_atr(bytes.fromhex(atr.replace(" ", "")))
    assert entry is not None and entry.id == "feitian-epass2003" and not entry.test
    assert "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so" in entry.module_files("linux")


GOOD: dict[str, Any] = {
    "id": "x", "name": "x", "medium": None, "test": True, "manufacturer": None, "model": None, "atrs": [],
    "modules": {}, "pinMaxTries": None, "reinitForNewTokens": False, "loadByDefault": False, "source": "tests",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"medium": "floppy"}, "medium"),
        ({"pinMaxTries": 0}, "pinMaxTries"),
        ({"pinMaxTries": True}, "pinMaxTries"),
        ({"atrs": [{"value": "3B00", "mask": "FF"}]}, "atrs[0]"),
        ({"atrs": [{"value": "zz", "mask": "FF"}]}, "atrs[0]"),
        ({"modules": {"amiga": ["x.so"]}}, "modules"),
        ({"colour": "red"}, "unknown"),
        ({"source": ""}, "source"),
        ({"test": "yes"}, "test"),
    ],
)
def test_a_catalog_that_breaks_the_schema_is_refused_naming_the_entry_and_field(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    path = tmp_path / "media.json"
    path.write_text(json.dumps({"version": 1, "entries": [GOOD | {"id": "vendor-a"} | change]}), encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(named)) as refusal:
        load_catalog(path)
    assert "vendor-a" in str(refusal.value)


@pytest.fixture
def operator_catalog(fresh_fixtures: Fixtures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An operator's own entry for the fixtures' SoftHSM2 tokens: 税控盘, locked after 3 tries."""
    path = tmp_path / "vendor-media.json"
    entry = GOOD | {
        "id": "operator-disk",
        "medium": "tax_control_disk",
        "manufacturer": "SoftHSM project",
        "modules": {"linux": [fresh_fixtures.module]},
        "pinMaxTries": 3,
    }
    path.write_text(json.dumps({"version": 1, "entries": [entry]}), encoding="utf-8")
    monkeypatch.setenv(CATALOG_ENV, str(path))
    default_catalog.cache_clear()
    yield path
    monkeypatch.delenv(CATALOG_ENV)
    default_catalog.cache_clear()


async def test_a_tokens_medium_and_retry_limit_come_from_the_catalog(
    fresh_fixtures: Fixtures, operator_catalog: Path
) -> None:
    async with running_agent(fresh_fixtures, pin_max_tries=None) as agent, connect(agent) as client:
        tokens = (await client.call("listCertificates"))["result"]["tokens"]
        assert {t["medium"] for t in tokens} == {"税控盘"}  # the catalog's word over the labels'
        token_id, _ = certificate_of(fresh_fixtures, "hairun-ec")
        replies = [await client.call("verifyPin", tokenId=token_id, pin="000000") for _ in range(3)]
    assert [r["error"].get("triesLeft") for r in replies[:2]] == [2, 1]
    assert replies[2]["error"]["code"] == "PIN_TRIES_RESERVED"  # the last of the catalog's 3 is the user's


def test_the_modules_loaded_by_default_are_the_catalogs_present_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERT_AGENT_MODULES", raising=False)
    modules = default_modules()
    assert all(Path(m).exists() for m in modules)
    assert "/usr/lib/softhsm/libsofthsm2.so" in modules  # installed here by scripts/setup.sh
    assert not any("tpm2" in m for m in modules)  # needs a resource manager: only when configured


def test_only_the_modules_the_catalog_marks_are_reinitialized_to_see_new_tokens() -> None:
    catalog = load_catalog(Path("cert_agent/drivers/media.json"))
    assert catalog.reinitializes("/usr/lib/softhsm/libsofthsm2.so")
    assert catalog.reinitializes("/usr/local/lib/softhsm/libsofthsm2.so")  # the same module, elsewhere
    assert not catalog.reinitializes("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
    assert not catalog.reinitializes("/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so")


def test_an_entry_may_state_the_pin_its_medium_comes_with_and_the_sm2_fixtures_use_it() -> None:
    from softhsm_fixtures.taxpayers import TAX_UKEY_DEFAULT_PIN

    catalog = load_catalog(Path("cert_agent/drivers/media.json"))
    entry = catalog.for_module("/anywhere/libsoftskf.so")
    assert entry is not None and entry.interface == "skf" and entry.initial_pin == TAX_UKEY_DEFAULT_PIN
    assert "330wanlu/1_mb_code" in entry.source
    assert catalog.for_module("/usr/lib/softhsm/libsofthsm2.so").initial_pin is None  # type: ignore[union-attr]
