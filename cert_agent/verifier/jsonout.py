"""The verifier's JSON out: its answers and the login state it stores, encoded by orjson.

orjson writes the same JSON values as the standard library several times faster (compact, and
text as UTF-8 rather than ``\\uXXXX`` escapes); encoding was a twentieth of a login's CPU
(docs/performance.md, issue 23). What comes in is still read by ``common.jsontext``.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")
