"""Values written into other programs' file formats, escaped by each format's own rules.

- ``desktop_exec``: the ``Exec=`` key of a Desktop Entry (freedesktop.org Desktop Entry
  Specification, "The Exec key"): an argument with a reserved character is put in double
  quotes, inside which ``"``, `` ` ``, ``$`` and ``\\`` are escaped with a backslash; ``%`` is
  written ``%%`` (it starts field codes); then the value is escaped as any string value of the
  file (``\\`` as ``\\\\``, and newline, tab and carriage return as ``\\n``, ``\\t``, ``\\r``).
- ``reg_string``: a string in a ``.reg`` file (Registry Editor 5.00): ``\\`` and ``"`` are
  escaped with a backslash; a line break cannot be written in a REG_SZ value and is refused.
"""

from __future__ import annotations

_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_IN_QUOTES = set('"`$\\')
_STRING_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _exec_argument(argument: str) -> str:
    if argument and not (_RESERVED & set(argument)):
        quoted = argument
    else:
        quoted = '"' + "".join("\\" + c if c in _IN_QUOTES else c for c in argument) + '"'
    return quoted.replace("%", "%%")


def desktop_exec(command: list[str]) -> str:
    """The value of ``Exec=`` that runs ``command`` exactly (program, then arguments)."""
    if not command or not command[0]:
        raise ValueError("a command needs a program")
    if any((ord(c) < 0x20 and c not in "\n\t\r") or c == "\x7f" for argument in command for c in argument):
        raise ValueError("a desktop entry cannot hold control characters")
    value = " ".join(_exec_argument(argument) for argument in command)
    return "".join(_STRING_ESCAPES.get(c, c) for c in value)


def reg_string(value: str) -> str:
    """``value`` as a quoted .reg string."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError("a .reg string value cannot hold a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
