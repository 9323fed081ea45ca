"""What the ``cert-agent`` command prints: tables for people (CJK-wide characters counted as two
columns) and JSON for machines."""

from __future__ import annotations

import json
import unicodedata
from typing import Any, TextIO


def print_json(out: TextIO, data: Any) -> None:
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def print_table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = [cell + " " * (widths[i] - width(cell)) for i, cell in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")
    if not rows:
        out.write("（无 none）\n")
