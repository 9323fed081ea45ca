"""Text log lines that a client cannot forge: control characters in a message are escaped.

A request path, an Origin or a token label comes from outside; decoded, ``%0A`` starts a forged
log line and ``%1B`` sends terminal escapes to whoever reads the log. The text formatter writes
every C0 and C1 control character (and the Unicode line and paragraph separators) of a message
as ``\\xNN`` / ``\\uNNNN``, so one record is always one line. Tracebacks, which the program makes
itself, keep their lines. (The JSON log escapes them by its format.)
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


class SafeTextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def use_safe_text(fmt: str) -> None:
    """Give the root logger's handlers the escaping formatter with ``fmt``."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SafeTextFormatter(fmt))
