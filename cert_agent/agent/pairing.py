"""Pairing: a page can tell this user's agent from an impostor on the same port.

A process of another user can listen on a port a page tries (one the agent does not hold, or
every port while the agent is not running) and act as the agent to collect PINs. The uid check
keeps it from relaying to the real agent, so what it cannot have is a secret the real agent
shares with the page. On first use an allowed origin's page asks ``pair`` and keeps the key the
agent gives it (the browser's storage for that origin); on every connection after that, the
page sends a fresh challenge in ``hello`` and the agent answers
HMAC-SHA256(key, "cert-agent-pairing-v1\\n" + origin + "\\n" + challenge). An answer that does not
verify (or none) is an impostor, and the page sends it nothing.

The keys (32 random bytes per origin) are kept in ``pairing.json`` in the user's private state
folder (``private_files``), read once and written when a key is made. Only a connection that
passed the uid and origin checks gets an origin's key, and only its own origin's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import warnings
from pathlib import Path

from cert_agent.agent.private_files import open_private, private_dir

log = logging.getLogger("cert_agent.pairing")
PROOF_LABEL = b"cert-agent-pairing-v1\n"
KEY_BYTES = 32


def default_pairing_file() -> Path:
    """$XDG_STATE_HOME/cert-agent/pairing.json on Linux (the platform's state folder elsewhere)."""
    import platformdirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_state_dir("cert-agent", appauthor=False)) / "pairing.json"


def proof(key: bytes, origin: str, challenge: bytes) -> bytes:
    """What the agent answers to a page's challenge (and the page computes to check it)."""
    return hmac.new(key, PROOF_LABEL + origin.encode("utf-8") + b"\n" + challenge, hashlib.sha256).digest()


class PairingKeys:
    """The pairing key of each origin. Blocking (file I/O): called off the event loop."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._keys: dict[str, bytes] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the keys now (raises PrivateDirUnsafe for a folder that is not the user's own)."""
        with self._lock:
            self._loaded()

    def key(self, origin: str) -> bytes | None:
        with self._lock:
            return self._loaded().get(origin)

    def key_or_new(self, origin: str) -> bytes:
        """The origin's key, made (and saved) on first use."""
        with self._lock:
            keys = self._loaded()
            if origin not in keys:
                keys[origin] = secrets.token_bytes(KEY_BYTES)
                self._save(keys)
                log.info("made a pairing key for %s", origin)
            return keys[origin]

    def _loaded(self) -> dict[str, bytes]:
        if self._keys is None:
            self._keys = self._read()
        return self._keys

    def _read(self) -> dict[str, bytes]:
        private_dir(self._path.parent)
        if not self._path.exists():
            return {}
        with os.fdopen(open_private(self._path, os.O_RDONLY), encoding="utf-8") as handle:
            try:
                raw = json.load(handle)
                return {str(origin): base64.b64decode(key) for origin, key in raw.items()}
            except (ValueError, AttributeError, TypeError):
                log.warning("%s is unreadable: pages pair again", self._path)
                return {}

    def _save(self, keys: dict[str, bytes]) -> None:
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        text = json.dumps({origin: base64.b64encode(key).decode() for origin, key in keys.items()})
        fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path)
