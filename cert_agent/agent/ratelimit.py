"""Wrong-PIN rate limits, per connection and per origin.

Only failures count (PIN_INCORRECT), so a taxpayer who types the right PIN is never slowed
down, while a page that guesses PINs is stopped long before a medium would lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class FailureWindow:
    """At most ``limit`` failures in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: deque[float] = deque()

    def retry_after(self) -> int:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = self._clock()
        while self._failures and self._failures[0] <= now - self._window:
            self._failures.popleft()
        if len(self._failures) < self._limit:
            return 0
        return max(1, math.ceil(self._failures[0] + self._window - now))

    def record_failure(self) -> None:
        self._failures.append(self._clock())
