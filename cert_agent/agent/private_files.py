"""Files only this user may touch: the agent's lock and its pairing keys.

A folder is used only when it is a real directory (not a symbolic link) that this user owns
with mode 0700 (a looser mode on our own folder is tightened); files in it are opened without
following links and must be ours. So another local user can neither plant a link that makes the
agent truncate a file of the user's, nor read or swap what the agent keeps. On Windows the
per-user folders are private by their ACLs and these checks are left to them.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from cert_agent.agent.errors import PrivateDirUnsafe

PRIVATE_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` as a private folder of this user, created (with its parents) if missing.
    Raises PrivateDirUnsafe when it is a link, not a folder, or another user's."""
    try:
        path.mkdir(parents=True, mode=PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PrivateDirUnsafe(f"{path}: {exc.strerror}", path=str(path)) from None
    if sys.platform == "win32":
        return path
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PrivateDirUnsafe(f"{path} is not a directory", path=str(path))
    if info.st_uid != os.geteuid():
        raise PrivateDirUnsafe(f"{path} belongs to uid {info.st_uid}", path=str(path))
    if info.st_mode & 0o077:
        os.chmod(path, PRIVATE_MODE, follow_symlinks=False)
    return path


def open_private(path: Path, flags: int) -> int:
    """Open (or create, mode 0600) ``path`` in a private folder without following a link;
    raises PrivateDirUnsafe for a link or a file of another user's."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise PrivateDirUnsafe(f"{path}: {exc.strerror}", path=str(path)) from None
    if sys.platform != "win32":
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise PrivateDirUnsafe(f"{path} is not a file of this user", path=str(path))
    return fd
