"""Opening the right driver for each library (``drivers/factory.py``): by the media catalog's
``interface``, else by what the library exports; a library no driver speaks is its own problem."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from cert_agent.drivers import factory
from cert_agent.drivers.catalog import CATALOG_ENV, default_catalog
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.pkcs11 import Pkcs11Driver
from softhsm_fixtures import Fixtures


def _shared_library(tmp_path: Path, name: str, symbol: str) -> Path:
    """A real shared library exporting ``symbol`` (compiled here with the system's cc)."""
    source = tmp_path / f"{name}.c"
    source.write_text(f"int {symbol}(void) {{ return 0; }}\n", encoding="utf-8")
    library = tmp_path / f"{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build a library")


def test_a_catalogued_library_speaks_its_entrys_interface(fixtures: Fixtures) -> None:
    assert factory.library_interface(fixtures.module) == "pkcs11"  # softhsm2 in media.json


@needs_cc
def test_an_unknown_library_is_told_by_what_it_exports(tmp_path: Path) -> None:
    assert factory.library_interface(str(_shared_library(tmp_path, "vendor-skf", "SKF_EnumDev"))) == "skf"
    assert factory.library_interface(str(_shared_library(tmp_path, "vendor-p11", "C_GetFunctionList"))) == "pkcs11"
    assert factory.library_interface(str(_shared_library(tmp_path, "other", "something_else"))) is None
    assert factory.library_interface(str(tmp_path / "missing.so")) is None


def test_open_driver_serves_pkcs11_modules_through_one_driver_set(fixtures: Fixtures) -> None:
    driver = factory.open_driver([fixtures.module, fixtures.module])
    try:
        assert driver.modules == [fixtures.module] and not driver.problems
        token = driver.find_token(label=fixtures.token("ukey").label)
        assert driver.certificates(token) and driver.pin_status(token).state.value == "ok"
    finally:
        driver.close()


@needs_cc
def test_a_library_no_driver_speaks_costs_only_itself(
    tmp_path: Path, fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch
) -> None:
    skf = _shared_library(tmp_path, "vendor-skf", "SKF_EnumDev")  # no SKF driver is registered yet
    driver = factory.open_driver([str(skf), fixtures.module])
    try:
        assert [p.module for p in driver.problems] == [str(skf)]
        assert driver.problems[0].error.code == "MODULE_LOAD_FAILED"
        assert driver.find_token(label=fixtures.token("ukey").label).module == fixtures.module
    finally:
        driver.close()


def test_the_catalog_may_say_a_library_speaks_skf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {
        "id": "vendor-skf", "name": "a vendor's SKF library", "medium": "tax_ukey", "interface": "skf",
        "test": True, "manufacturer": None, "model": None, "atrs": [],
        "modules": {"linux": ["/opt/vendor/libskf.so"]}, "pinMaxTries": 6, "reinitForNewTokens": False,
        "loadByDefault": False, "source": "this test", "notes": "",
    }  # fmt: skip
    extra = tmp_path / "vendor.json"
    extra.write_text(json.dumps({"version": 1, "entries": [entry]}), encoding="utf-8")
    monkeypatch.setenv(CATALOG_ENV, str(extra))
    default_catalog.cache_clear()
    try:
        assert factory.library_interface("/opt/vendor/libskf.so") == "skf"
    finally:
        monkeypatch.delenv(CATALOG_ENV)
        default_catalog.cache_clear()


def test_a_registered_kind_is_asked_first(fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[list[str]] = []

    def open_wrapped(paths: Sequence[str]) -> TokenDriver:
        opened.append(list(paths))
        return Pkcs11Driver(paths)

    monkeypatch.setattr(factory, "_KINDS", list(factory._KINDS))  # the test's registration goes with it
    factory.register(factory.DriverKind("double", lambda path: True, open_wrapped))
    factory.open_driver([fixtures.module]).close()
    assert opened == [[fixtures.module]]
