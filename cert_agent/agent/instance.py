"""One cert-agent per user: a lock file that the daemon (or a CLI command that writes to a
medium) holds while it runs.

Two writers on one token store can destroy it (SoftHSM2 rewrites its files on a PIN change), so
``cert-agent serve`` and ``cert-agent change-pin`` take the same per-user lock. The lock is an
OS file lock (flock on Unix, msvcrt on Windows): it ends with the process, however the process
ends, so a stale file never blocks the next start. The file says who holds it (pid, command,
port) for the message the second process prints and for ``doctor``. The folder must be this
user's own (mode 0700) and the file is opened without following links (``private_files``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import platformdirs

from cert_agent.agent.errors import AgentAlreadyRunning, PrivateDirUnsafe
from cert_agent.agent.private_files import open_private, private_dir

LOCK_NAME = "agent.lock"


def runtime_dir() -> Path:
    """The per-user runtime folder ($XDG_RUNTIME_DIR/cert-agent on Linux; platformdirs falls
    back to /run/user/UID, then /tmp/runtime-UID, and refuses a fallback another user made)."""
    with warnings.catch_warnings():  # its fallback warning is for programs that say nothing
        warnings.simplefilter("ignore")
        try:
            return Path(platformdirs.user_runtime_dir("cert-agent", appauthor=False))
        except PermissionError as exc:
            raise PrivateDirUnsafe(str(exc)) from None


def lock_path() -> Path:
    return runtime_dir() / LOCK_NAME


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":  # untested here: no Windows machine in CI
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def holder() -> dict[str, Any] | None:
    """Who holds the lock now ({"pid", "command", "port"}), or None when nobody does (or the
    folder is not safe to look in)."""
    try:
        path = lock_path()
        if not path.exists():
            return None
        handle = _open_lock(path)
    except PrivateDirUnsafe:
        return None
    with handle:
        if _try_lock(handle):
            return None  # nobody holds it; the lock ends as the file closes
        return _record(handle)


def serving_port() -> int | None:
    """The port of this user's running ``cert-agent serve`` (None when none serves)."""
    running = holder()
    if running is None or running.get("command") != "serve" or not isinstance(running.get("port"), int):
        return None
    return int(running["port"])


def _open_lock(path: Path) -> IO[str]:
    private_dir(path.parent)
    return os.fdopen(open_private(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+", encoding="utf-8")


def _record(handle: IO[str]) -> dict[str, Any]:
    """What the holder wrote into the lock file ({} while it has not yet written it)."""
    handle.seek(0)
    try:
        value = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class InstanceLock:
    """Hold the per-user lock for a ``with`` block; raises AgentAlreadyRunning when held."""

    def __init__(self, command: str, port: int | None = None) -> None:
        self._record: dict[str, Any] = {"pid": os.getpid(), "command": command, "port": port}
        self._handle: IO[str] | None = None

    def __enter__(self) -> InstanceLock:
        handle = _open_lock(lock_path())
        if not _try_lock(handle):
            other = _record(handle)
            handle.close()
            raise AgentAlreadyRunning(
                f"pid {other.get('pid')}, {other.get('command')}", **{k: other.get(k) for k in ("pid", "port")}
            )
        self._handle = handle
        self._write()
        return self

    def set_port(self, port: int) -> None:
        """Record the port the daemon listens on, once it has bound it."""
        self._record["port"] = port
        self._write()

    def _write(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate(0)
            self._handle.write(json.dumps(self._record))
            self._handle.flush()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            self._handle.close()  # closing the file ends the lock
            self._handle = None
