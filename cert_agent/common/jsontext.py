"""Strict JSON for untrusted input: the one reader the agent and the verifier use for bodies,
and the one check of a required text field in them.

Python's ``json`` module accepts text that cannot travel on: ``"\\ud800"`` decodes to a lone
surrogate, which no UTF-8 encoder (a WebSocket frame, SQLite, a log file) will take, and a
number of more than 4,300 digits raises a plain ``ValueError``. ``loads`` turns all of these
into one :class:`JsonRejected`, so every caller answers them with its own stable error code.
"""

from __future__ import annotations

import json
from typing import Any

from cert_agent.common.errors import BadRequest

MAX_DEPTH = 32  # far deeper than any request of ours; deep nesting is refused, not recursed


class JsonRejected(ValueError):
    """The text is not JSON this service accepts; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(text: str | bytes) -> Any:
    """Parse ``text``; raise JsonRejected for anything that is not plain, encodable JSON."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonRejected("nested too deeply") from None
    except UnicodeDecodeError:
        raise JsonRejected("not UTF-8") from None
    except ValueError:  # JSONDecodeError, and numbers past Python's int-string limit
        raise JsonRejected("not JSON") from None
    _check(value)
    return value


def _check(root: Any) -> None:
    """Every string (key or value) is valid Unicode, and nesting stays under MAX_DEPTH."""
    pending: list[tuple[Any, int]] = [(root, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise JsonRejected("nested too deeply")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRejected("a string is not valid Unicode (a lone surrogate)") from None


def text_field(fields: dict[str, Any], name: str, max_length: int, *, allow_empty: bool = False) -> str:
    """A required string field of at most ``max_length`` characters (non-empty unless
    ``allow_empty``), or BadRequest naming the field (never its value). Used by the agent's
    protocol and the verifier's API."""
    value = fields.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise BadRequest(name, "a string is required" if allow_empty else "a non-empty string is required")
    if len(value) > max_length:
        raise BadRequest(name, f"at most {max_length} characters")
    return value
