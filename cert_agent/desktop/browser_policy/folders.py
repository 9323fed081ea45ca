"""The folders a policy install makes, recorded so that remove takes exactly those away again."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def missing_folders(folder: Path, root: Path) -> list[Path]:
    """``folder`` and its parents below ``root`` that do not exist yet."""
    missing = []
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def created_folders(listed: object, root: Path) -> list[Path]:
    """The folders a record lists (relative to ``root``; anything else in it is ignored)."""
    if not isinstance(listed, list):
        return []
    return [root / name for name in listed if isinstance(name, str) and ".." not in Path(name).parts]


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each folder that is empty, the deepest first (what others put there stays)."""
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
