"""``cert-verifier import``: enterprises, persons, roles and agreements from JSON or CSV.

The format, with a sample, is ``docs/directory-import.md``. JSON: one object
``{"enterprises": [...], "persons": [...], "roles": [...], "agreements": [...], "crossRegion": [...]}``. CSV: one file
per kind, named after it (``enterprises.csv`` ...), a header row with the JSON field names; a
list field (``phones``) holds its values separated by ``;``.

Every record is checked before anything is written; a bad one is refused naming its file, line,
record and field, and then nothing of the import is stored. Then all are written in one
transaction: a record that exists already is updated in place.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_agent.common.taxpayer_id import parse_taxpayer_id, uscc_check_character
from cert_agent.verifier.store import (
    AGREEMENT_STATUSES,
    CROSS_REGION_KINDS,
    ROLES,
    Agreement,
    CrossRegionIdentity,
    Enterprise,
    Person,
)

KINDS = ("enterprises", "persons", "roles", "agreements", "crossRegion")
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")  # a mainland mobile number, 11 digits
_KIND_ARRAY = re.compile(r'"(enterprises|persons|roles|agreements|crossRegion)"\s*:\s*\[')


class ImportError_(ValueError):
    """A record that cannot be imported; the message names the file, line, record and field."""


@dataclass
class Source:
    """The records read, each with where it came from (file and line), for the error messages."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    places: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def __getitem__(self, kind: str) -> list[dict[str, Any]]:
        return self.records[kind]

    def place(self, kind: str, index: int) -> str:
        where = self.places[kind][index] if index < len(self.places[kind]) else ""
        return f"{where} {kind}[{index}]".strip()


def read_sources(paths: list[Path]) -> Source:
    source = Source()
    for path in paths:
        if path.suffix.lower() == ".json":
            _read_json(path, source)
        elif path.suffix.lower() == ".csv" and path.stem in KINDS:
            try:
                with path.open(encoding="utf-8-sig", newline="") as handle:
                    reader = csv.DictReader(handle)
                    for row in reader:
                        source.records[path.stem].append(dict(row))
                        source.places[path.stem].append(f"{path.name} line {reader.line_num}")
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise ImportError_(f"{path}: {exc}") from None
        else:
            raise ImportError_(f"{path}: expected a .json file or {', '.join(k + '.csv' for k in KINDS)}")
    return source


def _read_json(path: Path, source: Source) -> None:
    try:
        text = path.read_text(encoding="utf-8")
        loaded = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{path.name} line {exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(loaded, dict):
        raise ImportError_(f"{path.name}: a JSON object is required")
    lines = _record_lines(text)
    for kind in KINDS:
        records = loaded.get(kind, [])
        if not isinstance(records, list):
            raise ImportError_(f"{path.name}: {kind} must be a list")
        source.records[kind].extend(records)
        found = lines.get(kind, [])
        source.places[kind].extend(
            f"{path.name} line {found[i]}" if i < len(found) else path.name for i in range(len(records))
        )


def _record_lines(text: str) -> dict[str, list[int]]:
    """The line each record of each kind's list starts on (best effort: for messages only)."""
    decoder = json.JSONDecoder()
    lines: dict[str, list[int]] = {}
    for match in _KIND_ARRAY.finditer(text):
        position, starts = match.end(), []
        while True:
            while position < len(text) and text[position] in " \t\r\n,":
                position += 1
            if position >= len(text) or text[position] == "]":
                break
            try:
                _, end = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                break
            starts.append(text.count("\n", 0, position) + 1)
            position = end
        lines.setdefault(match.group(1), starts)
    return lines


class _Checker:
    def __init__(self, source: Source) -> None:
        self.source = source

    def fail(self, kind: str, index: int, name: str, reason: str) -> ImportError_:
        return ImportError_(f"{self.source.place(kind, index)}.{name}: {reason}")

    def record(self, kind: str, index: int) -> dict[str, Any]:
        record = self.source[kind][index]
        if not isinstance(record, dict):
            raise ImportError_(f"{self.source.place(kind, index)}: a record is an object")
        return record

    def text(self, kind: str, index: int, name: str) -> str:
        value = self.record(kind, index).get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(kind, index, name, "a non-empty string is required")
        return value.strip()

    def taxpayer(self, kind: str, index: int, name: str) -> str:
        value = self.text(kind, index, name)
        parsed = parse_taxpayer_id(value)
        if parsed is None:
            raise self.fail(
                kind, index, name, f"{value} is not a taxpayer ID (an 18-character USCC, or 15, 17 or 20 characters)"
            )
        if not parsed.is_valid:
            expected = uscc_check_character(value[:17])
            raise self.fail(
                kind, index, name, f"{value}: the GB 32100 check character is wrong (it would be {expected})"
            )
        return parsed.value

    def optional_text(self, kind: str, index: int, name: str) -> str:
        value = self.record(kind, index).get(name, "")
        if not isinstance(value, str):
            raise self.fail(kind, index, name, "a string is required (it may be empty)")
        return value.strip()

    def boolean(self, kind: str, index: int, name: str) -> bool:
        value = self.record(kind, index).get(name, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "no", "否"):
            return False
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "是"):
            return True
        raise self.fail(kind, index, name, "true or false is required")

    def date(self, kind: str, index: int, name: str) -> dt.date:
        value = self.text(kind, index, name)
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.fail(kind, index, name, f"{value} is not a date (YYYY-MM-DD)") from None

    def phones(self, kind: str, index: int) -> tuple[str, ...]:
        """``phones`` (a list, or ``;``-separated in CSV; the first is the default), or the older
        single ``phone``; none at all is allowed (scan verification only)."""
        record = self.record(kind, index)
        name = "phones" if "phones" in record else "phone"
        value = record.get(name, "")
        if isinstance(value, str):
            value = [part for part in re.split(r"[;\s]+", value) if part]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(kind, index, name, "a list of phone numbers is required (it may be empty)")
        for number in value:
            if not MOBILE.match(number):
                raise self.fail(kind, index, name, f"{number} is not a mobile number (11 digits, 1[3-9]…)")
        if len(set(value)) != len(value):
            raise self.fail(kind, index, name, "a number is listed twice")
        return tuple(value)


def check_records(data: Source | dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Typed records, or ImportError_ for the first bad one."""
    source = data if isinstance(data, Source) else Source({kind: list(data.get(kind, [])) for kind in KINDS})
    c = _Checker(source)
    enterprises = [
        Enterprise(
            c.taxpayer("enterprises", i, "taxpayerId"),
            c.text("enterprises", i, "name"),
            c.boolean("enterprises", i, "isAgency"),
            c.optional_text("enterprises", i, "taxAuthority"),
        )
        for i in range(len(source["enterprises"]))
    ]
    persons = []
    for i in range(len(source["persons"])):
        phones = c.phones("persons", i)
        persons.append(
            Person(
                c.text("persons", i, "personId"),
                c.text("persons", i, "name"),
                c.text("persons", i, "idNumber"),
                phones[0] if phones else "",
                phones[1:],
            )
        )
    roles = []
    for i in range(len(source["roles"])):
        role = c.text("roles", i, "role")
        if role not in ROLES:
            raise c.fail("roles", i, "role", f"{role} is not one of {', '.join(ROLES)}")
        roles.append((c.taxpayer("roles", i, "taxpayerId"), c.text("roles", i, "personId"), role))
    agreements = []
    for i in range(len(source["agreements"])):
        status = c.text("agreements", i, "status")
        if status not in AGREEMENT_STATUSES:
            raise c.fail("agreements", i, "status", f"{status} is not one of {', '.join(AGREEMENT_STATUSES)}")
        agreements.append(
            Agreement(
                c.taxpayer("agreements", i, "agencyId"),
                c.taxpayer("agreements", i, "clientId"),
                c.date("agreements", i, "validFrom"),
                c.date("agreements", i, "validTo"),
                status,
            )
        )
    cross_region = []
    for i in range(len(source["crossRegion"])):
        kind = c.text("crossRegion", i, "kind")
        if kind not in CROSS_REGION_KINDS:
            raise c.fail("crossRegion", i, "kind", f"{kind} is not one of {', '.join(CROSS_REGION_KINDS)}")
        cross_region.append(
            CrossRegionIdentity(
                c.text("crossRegion", i, "identityId"),
                c.taxpayer("crossRegion", i, "taxpayerId"),
                kind,
                c.text("crossRegion", i, "name"),
                c.text("crossRegion", i, "taxAuthority"),
            )
        )
    known = {e.taxpayer_id for e in enterprises}
    for i, identity in enumerate(cross_region):
        if identity.taxpayer_id not in known:
            raise c.fail("crossRegion", i, "taxpayerId", "the enterprise must be in the same import")
    people = {p.person_id for p in persons}
    for i, (taxpayer_id, person_id, _) in enumerate(roles):
        if taxpayer_id not in known:
            raise c.fail("roles", i, "taxpayerId", "the enterprise must be in the same import")
        if person_id not in people:
            raise c.fail("roles", i, "personId", "the person must be in the same import")
    for i, a in enumerate(agreements):
        if a.agency_id not in known:
            raise c.fail("agreements", i, "agencyId", "the agency must be in the same import")
        if a.client_id not in known:
            raise c.fail("agreements", i, "clientId", "the client must be in the same import")
    return {
        "enterprises": enterprises,
        "persons": persons,
        "roles": roles,
        "agreements": agreements,
        "crossRegion": cross_region,
    }
