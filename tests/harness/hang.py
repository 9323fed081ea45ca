"""Tokens that stop answering on demand, through the double in tests/doubles/hang (see its docstring)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HANG_DOUBLE = Path(__file__).parent.parent / "doubles" / "hang"


class HungMedia:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def logins(self, serial: str) -> int:
        """How many C_Logins on the token with ``serial`` reached its module."""
        logins = self.directory / "logins"
        return logins.read_text(encoding="utf-8").split().count(serial) if logins.exists() else 0

    @contextmanager
    def hung(self, serial: str) -> Iterator[None]:
        """C_Login on the token with ``serial`` blocks until the block ends."""
        stalled = self.directory / serial
        stalled.touch()
        try:
            yield
        finally:
            stalled.unlink()


@contextmanager
def media_that_can_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HungMedia]:
    """Worker processes started inside the block load the double (they inherit os.environ)."""
    directory = tmp_path / "hung"
    directory.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HANG_DOUBLE), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TEST_HANG_DIR", str(directory))
    yield HungMedia(directory)
