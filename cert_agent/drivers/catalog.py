"""The media catalog: what is known about tax media and their libraries, as data
(``media.json``), read into typed entries and checked field by field.

An entry says how to recognise a medium (ATR patterns with masks for a card in a reader; the
manufacturer and model strings of its token), which module file drives it on each OS, what
kind of medium it is (税务UKey / 金税盘 / 税控盘), the interface its library speaks
(PKCS#11 or SKF, GM/T 0016; PKCS#11 where the entry does not say), the PIN it comes with when
its source states one (``initialPin``), a PKCS#11 module's vendor-defined SM2 values (``sm2``:
its key type, mechanism and signature format), its PIN retry limit when the vendor states
one, whether the module must be re-initialised to see tokens created after it loaded, and the
public source of these facts. Entries made for the tests say so (``test``).

Used for: the modules loaded when the user names none, the medium and retry limit of a token,
and the driver to suggest for a card that no loaded module shows.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cert_agent.drivers.models import Medium

CATALOG_FILE = Path(__file__).with_name("media.json")
CATALOG_ENV = "CERT_AGENT_MEDIA_CATALOG"
MEDIA = {
    "tax_ukey": Medium.TAX_UKEY,
    "golden_tax_disk": Medium.GOLDEN_TAX_DISK,
    "tax_control_disk": Medium.TAX_CONTROL_DISK,
}
SYSTEMS = ("linux", "darwin", "windows")
_FIELDS = {
    "id", "name", "medium", "test", "manufacturer", "model", "atrs", "modules", "pinMaxTries",
    "reinitForNewTokens", "loadByDefault", "source", "notes", "interface", "initialPin", "sm2",
}  # fmt: skip
_OPTIONAL = {"notes", "interface", "initialPin", "sm2"}
INTERFACES = ("pkcs11", "skf")  # what an entry's library speaks (drivers/factory.py opens it so)


class CatalogError(ValueError):
    """The catalog breaks its schema; the message names the entry and the field."""


@dataclass(frozen=True)
class AtrPattern:
    value: bytes
    mask: bytes

    def matches(self, atr: bytes) -> bool:
        return len(atr) == len(self.value) and all(
            a & m == v & m for a, v, m in zip(atr, self.value, self.mask, strict=True)
        )


@dataclass(frozen=True)
class Sm2OverPkcs11:
    """How a vendor's PKCS#11 module does SM2 (vendor-defined values, as the entry's source states
    them): the CKA_KEY_TYPE of its SM2 keys, the mechanism that signs SM3(Z || M) with the GM/T
    0009 default ID computed by the module, and whether that mechanism returns ``r || s`` ("raw")
    or DER."""

    key_type: int
    mechanism: int
    signature: str  # "raw" or "der"


@dataclass(frozen=True)
class MediaEntry:
    id: str
    name: str
    medium: Medium | None  # None: the catalog does not know (the token's label may say)
    test: bool
    manufacturer: str | None
    model: str | None
    atrs: tuple[AtrPattern, ...]
    modules: dict[str, tuple[str, ...]]  # system ("linux", "darwin", "windows") -> module files
    pin_max_tries: int | None
    reinit_for_new_tokens: bool
    load_by_default: bool
    source: str
    notes: str
    interface: str = "pkcs11"  # "pkcs11" or "skf": the interface its library speaks
    initial_pin: str | None = None  # the PIN the medium comes with, where its source states it
    sm2: Sm2OverPkcs11 | None = None  # a PKCS#11 module's own SM2 values (none are standard)

    def module_files(self, system: str) -> tuple[str, ...]:
        return self.modules.get(system, ())

    def names_module(self, module: str) -> bool:
        """``module`` is one of this entry's module files (by path, or by file name elsewhere)."""
        return any(module == path or Path(module).name == Path(path).name
                   for paths in self.modules.values() for path in paths)  # fmt: skip

    def describes_token(self, module: str, manufacturer: str, model: str) -> bool:
        """This entry's module, and its manufacturer and model where it names them."""
        if not self.names_module(module):
            return False
        return (self.manufacturer is None or self.manufacturer == manufacturer) and (
            self.model is None or self.model == model
        )


@dataclass(frozen=True)
class MediaCatalog:
    entries: tuple[MediaEntry, ...]
    # for_token's answers: it is asked on every token operation (the driver re-reads the token)
    _by_token: dict[tuple[str, str, str], MediaEntry | None] = field(default_factory=dict, compare=False, repr=False)

    def default_modules(self, system: str | None = None) -> list[str]:
        """Every module file the catalog loads by default on ``system`` (this one if None)."""
        system = system or current_system()
        return [path for e in self.entries if e.load_by_default for path in e.module_files(system)]

    def for_token(self, module: str, manufacturer: str, model: str) -> MediaEntry | None:
        key = (module, manufacturer, model)
        if key not in self._by_token:
            self._by_token[key] = next((e for e in self.entries if e.describes_token(*key)), None)
        return self._by_token[key]

    def for_module(self, module: str) -> MediaEntry | None:
        """The first entry naming ``module`` as one of its files."""
        return next((e for e in self.entries if e.names_module(module)), None)

    def reinitializes(self, module: str) -> bool:
        """``module`` shows tokens added after C_Initialize only once initialized again."""
        return any(e.reinit_for_new_tokens and e.names_module(module) for e in self.entries)

    def for_atr(self, atr: bytes) -> MediaEntry | None:
        return next((e for e in self.entries if any(p.matches(atr) for p in e.atrs)), None)


def current_system() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    return "darwin" if sys.platform == "darwin" else "linux"


@cache
def default_catalog() -> MediaCatalog:
    """The shipped catalog, after the entries of the file named by $CERT_AGENT_MEDIA_CATALOG
    (an operator's own vendor entries, which take precedence)."""
    shipped = load_catalog(CATALOG_FILE)
    extra = os.environ.get(CATALOG_ENV)
    if not extra:
        return shipped
    return MediaCatalog(load_catalog(Path(extra)).entries + shipped.entries)


def load_catalog(path: Path) -> MediaCatalog:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("entries"), list):
        raise CatalogError(f"{path}: a version 1 catalog with a list of entries is required")
    entries = tuple(_entry(raw, index) for index, raw in enumerate(data["entries"]))
    ids = [e.id for e in entries]
    if len(ids) != len(set(ids)):
        raise CatalogError(f"{path}: entry ids must be unique")
    return MediaCatalog(entries)


def _entry(raw: Any, index: int) -> MediaEntry:
    where = f"entry {index}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: an object is required")
    where = f"entry {raw.get('id', index)!r}"
    missing, unknown = _FIELDS - set(raw) - _OPTIONAL, set(raw) - _FIELDS
    if missing or unknown:
        raise CatalogError(f"{where}: missing {sorted(missing)} / unknown {sorted(unknown)}")

    def text(name: str, *, optional: bool = False) -> str | None:
        value = raw.get(name, "")
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not value and name != "notes"):
            raise CatalogError(f"{where}: {name} must be a {'string or null' if optional else 'non-empty string'}")
        return value

    def flag(name: str) -> bool:
        if not isinstance(raw[name], bool):
            raise CatalogError(f"{where}: {name} must be true or false")
        return bool(raw[name])

    medium = raw["medium"]
    if medium is not None and medium not in MEDIA:
        raise CatalogError(f"{where}: medium must be one of {sorted(MEDIA)} or null")
    tries = raw["pinMaxTries"]
    if tries is not None and (isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= 255):
        raise CatalogError(f"{where}: pinMaxTries must be an integer from 1 to 255, or null")
    modules = raw["modules"]
    if not isinstance(modules, dict) or set(modules) - set(SYSTEMS):
        raise CatalogError(f"{where}: modules must map {', '.join(SYSTEMS)} to lists of files")
    for system, files in modules.items():
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise CatalogError(f"{where}: modules.{system} must be a list of file paths")
    atrs = raw["atrs"]
    if not isinstance(atrs, list):
        raise CatalogError(f"{where}: atrs must be a list")
    return MediaEntry(
        id=str(text("id")),
        name=str(text("name")),
        medium=MEDIA[medium] if medium is not None else None,
        test=flag("test"),
        manufacturer=text("manufacturer", optional=True),
        model=text("model", optional=True),
        atrs=tuple(_atr(a, f"{where}: atrs[{i}]") for i, a in enumerate(atrs)),
        modules={system: tuple(files) for system, files in modules.items()},
        pin_max_tries=tries,
        reinit_for_new_tokens=flag("reinitForNewTokens"),
        load_by_default=flag("loadByDefault"),
        source=str(text("source")),
        notes=str(text("notes")),
        interface=_interface(raw.get("interface", "pkcs11"), where),
        initial_pin=_initial_pin(raw.get("initialPin"), where),
        sm2=_sm2(raw.get("sm2"), where),
    )


def _sm2(value: Any, where: str) -> Sm2OverPkcs11 | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"keyType", "mechanism", "signature"}:
        raise CatalogError(f"{where}: sm2 must be an object with keyType, mechanism and signature")

    def number(name: str) -> int:
        text = value[name]
        try:
            parsed = int(text, 16) if isinstance(text, str) and text.startswith("0x") else None
        except ValueError:
            parsed = None
        if parsed is None or not 0x80000000 <= parsed <= 0xFFFFFFFF:
            raise CatalogError(f"{where}: sm2.{name} must be a vendor-defined value in hex (0x80000000 and up)")
        return parsed

    if value["signature"] not in ("raw", "der"):
        raise CatalogError(f"{where}: sm2.signature must be raw or der")
    return Sm2OverPkcs11(number("keyType"), number("mechanism"), value["signature"])


def _initial_pin(value: Any, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not 4 <= len(value) <= 16 or not value.isascii()):
        raise CatalogError(f"{where}: initialPin must be 4 to 16 ASCII characters, or null")
    return value


def _interface(value: Any, where: str) -> str:
    if value not in INTERFACES:
        raise CatalogError(f"{where}: interface must be one of {', '.join(INTERFACES)}")
    return str(value)


def _atr(raw: Any, where: str) -> AtrPattern:
    if not isinstance(raw, dict) or set(raw) != {"value", "mask"}:
        raise CatalogError(f"{where}: an object with value and mask is required")
    try:
        value, mask = bytes.fromhex(raw["value"]), bytes.fromhex(raw["mask"])
    except (TypeError, ValueError):
        raise CatalogError(f"{where}: value and mask must be hexadecimal") from None
    if not 2 <= len(value) <= 33 or len(mask) != len(value):
        raise CatalogError(f"{where}: an ATR is 2 to 33 bytes and its mask as long")
    return AtrPattern(value, mask)
