"""Sharing one PKCS#11 module between calls, and having it alone to re-initialize it.

Calls into a module share it; C_Finalize + C_Initialize (which ends every session, see
``Pkcs11Driver.rescan``) needs it alone. :class:`ModuleSharing` is that rule, and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ModuleSharing:
    """Calls into one module share it; re-initializing it (which ends every session) needs it
    alone. A re-initialization holds new calls back and waits for the calls under way to end, so
    steady traffic cannot put it off forever, but never longer than until the oldest call under
    way is ``wait`` seconds old: a call that old may hang, and the re-initialization is skipped
    then (at once, while such a call goes on), so a hung call holds up nobody else.

    A thread may enter ``shared`` again inside a call (the driver's helpers do); only its
    outermost entry counts and waits.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._started: dict[int, float] = {}  # thread -> when its call under way began
        self._depth = threading.local()
        self._reinitializing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth: int = getattr(self._depth, "value", 0)
        if depth == 0:
            with self._changed:
                self._changed.wait_for(lambda: not self._reinitializing)
                self._started[threading.get_ident()] = time.monotonic()
        self._depth.value = depth + 1
        try:
            yield
        finally:
            self._depth.value = depth
            if depth == 0:
                with self._changed:
                    del self._started[threading.get_ident()]
                    self._changed.notify_all()

    @contextmanager
    def alone(self, wait: float) -> Iterator[bool]:
        """Yields True once no call is under way (and none starts until the block ends), False
        when the calls under way did not end before the oldest of them was ``wait`` seconds old."""
        with self._changed:
            now = time.monotonic()
            left = min(self._started.values(), default=now) + wait - now
            if self._started and left > 0:
                self._reinitializing = True  # new calls wait from now on
                self._changed.wait_for(lambda: not self._started, timeout=left)
            alone = not self._started
            self._reinitializing = alone
            if not alone:
                self._changed.notify_all()  # the calls held back go on
        try:
            yield alone
        finally:
            if alone:
                with self._changed:
                    self._reinitializing = False
                    self._changed.notify_all()
