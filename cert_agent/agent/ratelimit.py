"""Wrong-PIN rate limits, per connection, per origin and per token.

Only failures count (PIN_INCORRECT), so a taxpayer who types the right PIN is never slowed
down, while a page that guesses PINs is stopped long before a medium would lock.

An attempt counts from the moment it is admitted, not from the moment the token answers: an
admitted attempt holds a place in every window it passes until its outcome is known. The agent
admits a token's PIN attempts one at a time (``TokenService.pin_turn``), so PINs sent all at
once are judged in turn and the ones past the limit are refused before they reach the token;
the places held by attempts under way matter for a connection or origin using several tokens
at once.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from cert_agent.agent.errors import RateLimited
from cert_agent.drivers.errors import PinIncorrect, PinLocked


class FailureWindow:
    """At most ``limit`` failures, counting attempts still under way, in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: deque[float] = deque()
        self._pending = 0

    def retry_after(self) -> int:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = self._clock()
        while self._failures and self._failures[0] <= now - self._window:
            self._failures.popleft()
        if len(self._failures) + self._pending < self._limit:
            return 0
        if not self._failures:  # only attempts under way: their outcome frees a place soon
            return 1
        return max(1, math.ceil(self._failures[0] + self._window - now))

    def reserve(self) -> None:
        self._pending += 1

    def settle(self, failed: bool) -> None:
        self._pending -= 1
        if failed:
            self._failures.append(self._clock())


@contextmanager
def pin_attempt(windows: Sequence[FailureWindow]) -> Iterator[None]:
    """Admit one PIN attempt through every window, or raise RateLimited before anything runs.

    A wrong PIN counts as a failure in each window, and so does a PIN answered PIN_LOCKED (the
    wrong PIN that reached the known retry limit, or one sent to a locked medium): otherwise a
    page could go on guessing on a medium that only the agent believes locked. So does an
    attempt abandoned before its outcome is known (the connection closed): the PIN may still
    reach the token, and a page must not escape the count by hanging up.
    """
    wait = max(window.retry_after() for window in windows)
    if wait:
        raise RateLimited(wait)
    for window in windows:
        window.reserve()
    failed = True
    try:
        yield
        failed = False
    except (PinIncorrect, PinLocked):
        raise
    except Exception:
        failed = False  # another error (removed, timeout, bad request): the PIN was not judged wrong
        raise
    finally:
        for window in windows:
            window.settle(failed)


class WindowsByKey:
    """One FailureWindow per origin (or per token), made on first use."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._windows: dict[str, FailureWindow] = {}

    def __getitem__(self, key: str) -> FailureWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = FailureWindow(self._limit, self._window, self._clock)
        return window
