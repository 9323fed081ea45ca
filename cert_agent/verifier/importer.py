"""``cert-verifier import``: enterprises, persons, roles and agreements from JSON or CSV.

JSON: one object ``{"enterprises": [...], "persons": [...], "roles": [...], "agreements": [...]}``.
CSV: one file per kind, the kind named by the file name (``enterprises.csv``, ``persons.csv``,
``roles.csv``, ``agreements.csv``), a header row with the JSON field names.

Fields: enterprises ``taxpayerId, name, isAgency``; persons ``personId, name, idNumber,
phone``; roles ``taxpayerId, personId, role`` (法定代表人, 财务负责人, 办税员, 开票员);
agreements ``agencyId, clientId, validFrom, validTo, status`` (active, suspended, terminated).
Every record is checked before anything is written; then all are written in one transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

from cert_agent.common.taxpayer_id import parse_taxpayer_id
from cert_agent.verifier.store import AGREEMENT_STATUSES, ROLES, Agreement, Enterprise, Person

KINDS = ("enterprises", "persons", "roles", "agreements")


class ImportError_(ValueError):
    """A record that cannot be imported; the message names the kind, index and field."""


def read_sources(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for path in paths:
        if path.suffix.lower() == ".json":
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ImportError_(f"{path}: {exc}") from None
            if not isinstance(loaded, dict):
                raise ImportError_(f"{path}: a JSON object is required")
            for kind in KINDS:
                records = loaded.get(kind, [])
                if not isinstance(records, list):
                    raise ImportError_(f"{path}: {kind} must be a list")
                data[kind].extend(records)
        elif path.suffix.lower() == ".csv" and path.stem in KINDS:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                data[path.stem].extend(csv.DictReader(handle))
        else:
            raise ImportError_(f"{path}: expected a .json file or {', '.join(k + '.csv' for k in KINDS)}")
    return data


def _text(record: Any, kind: str, index: int, name: str) -> str:
    if not isinstance(record, dict):
        raise ImportError_(f"{kind}[{index}]: a record is an object")
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ImportError_(f"{kind}[{index}].{name}: a non-empty string is required")
    return value.strip()


def _optional_text(record: Any, kind: str, index: int, name: str) -> str:
    """A string that may be empty or left out ("": none)."""
    value = record.get(name, "") if isinstance(record, dict) else None
    if not isinstance(value, str):
        raise ImportError_(f"{kind}[{index}].{name}: a string is required (empty: none)")
    return value.strip()


def _taxpayer(record: Any, kind: str, index: int, name: str) -> str:
    value = _text(record, kind, index, name)
    parsed = parse_taxpayer_id(value)
    if parsed is None or not parsed.is_valid:
        raise ImportError_(f"{kind}[{index}].{name}: {value} is not a valid taxpayer ID")
    return parsed.value


def _bool(record: dict[str, Any], name: str) -> bool:
    value = record.get(name, False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "是")
    return bool(value)


def _date(record: Any, kind: str, index: int, name: str) -> dt.date:
    value = _text(record, kind, index, name)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ImportError_(f"{kind}[{index}].{name}: {value} is not a date (YYYY-MM-DD)") from None


def check_records(data: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Typed records, or ImportError_ for the first bad one."""
    enterprises = [
        Enterprise(
            _taxpayer(r, "enterprises", i, "taxpayerId"), _text(r, "enterprises", i, "name"), _bool(r, "isAgency")
        )
        for i, r in enumerate(data["enterprises"])
    ]
    persons = [
        Person(
            _text(r, "persons", i, "personId"),
            _text(r, "persons", i, "name"),
            _text(r, "persons", i, "idNumber"),
            _optional_text(r, "persons", i, "phone"),
        )
        for i, r in enumerate(data["persons"])
    ]
    roles = []
    for i, r in enumerate(data["roles"]):
        role = _text(r, "roles", i, "role")
        if role not in ROLES:
            raise ImportError_(f"roles[{i}].role: {role} is not one of {', '.join(ROLES)}")
        roles.append((_taxpayer(r, "roles", i, "taxpayerId"), _text(r, "roles", i, "personId"), role))
    agreements = []
    for i, r in enumerate(data["agreements"]):
        status = _text(r, "agreements", i, "status")
        if status not in AGREEMENT_STATUSES:
            raise ImportError_(f"agreements[{i}].status: {status} is not one of {', '.join(AGREEMENT_STATUSES)}")
        agreements.append(
            Agreement(
                _taxpayer(r, "agreements", i, "agencyId"),
                _taxpayer(r, "agreements", i, "clientId"),
                _date(r, "agreements", i, "validFrom"),
                _date(r, "agreements", i, "validTo"),
                status,
            )
        )
    known = {e.taxpayer_id for e in enterprises}
    people = {p.person_id for p in persons}
    for i, (taxpayer_id, person_id, _) in enumerate(roles):
        if taxpayer_id not in known or person_id not in people:
            raise ImportError_(f"roles[{i}]: the enterprise and the person must be in the same import")
    for i, a in enumerate(agreements):
        if a.agency_id not in known or a.client_id not in known:
            raise ImportError_(f"agreements[{i}]: agency and client must be in the same import")
    return {"enterprises": enterprises, "persons": persons, "roles": roles, "agreements": agreements}
