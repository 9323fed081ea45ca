"""The wrong-PIN windows on their own (``agent/ratelimit.py``), with a clock the test moves: the
real-process tests (``test_agent_hardening.py``, ``test_pin_shares.py``) show the same rules
through the agent."""

from __future__ import annotations

import pytest

from cert_agent.agent.errors import RateLimited
from cert_agent.agent.ratelimit import FailureWindow, WindowsByKey, pin_attempt
from cert_agent.drivers.errors import PinIncorrect, PinLocked, TokenNotPresent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(windows: list[FailureWindow], error: Exception) -> None:
    with pytest.raises(type(error)), pin_attempt(windows):
        raise error


def test_only_wrong_and_locked_answers_fill_a_window() -> None:
    window = FailureWindow(2, 60, Clock())
    for _ in range(5):
        with pin_attempt([window]):
            pass  # right PINs never count
    _fail([window], TokenNotPresent("s"))  # nor errors that judged no PIN
    assert window.retry_after() == 0
    _fail([window], PinIncorrect("s", tries_left=None))
    _fail([window], PinLocked("s"))
    assert window.retry_after() == 60


def test_a_full_window_refuses_before_anything_runs_and_says_when_to_retry() -> None:
    clock = Clock()
    window = FailureWindow(1, 60, clock)
    _fail([window], PinIncorrect("s", tries_left=None))
    clock.now += 45
    ran = False
    with pytest.raises(RateLimited) as refused, pin_attempt([window]):
        ran = True
    assert not ran and refused.value.to_dict()["retryAfter"] == 15


def test_a_failure_leaves_the_window_once_it_is_older_than_the_window() -> None:
    clock = Clock()
    window = FailureWindow(1, 60, clock)
    _fail([window], PinIncorrect("s", tries_left=None))
    clock.now += 60
    assert window.retry_after() == 0


def test_an_attempt_under_way_holds_a_place_until_its_outcome() -> None:
    window = FailureWindow(1, 60, Clock())
    with pin_attempt([window]):
        assert window.retry_after() == 1  # nothing failed yet: its outcome frees the place soon
    assert window.retry_after() == 0


def test_an_attempt_abandoned_before_its_outcome_counts_as_a_failure() -> None:
    window = FailureWindow(1, 60, Clock())
    attempt = pin_attempt([window])
    attempt.__enter__()
    attempt.__exit__(GeneratorExit, GeneratorExit(), None)  # the connection closed mid-call
    assert window.retry_after() == 60


def test_every_window_counts_the_failure_and_the_fullest_one_decides() -> None:
    clock = Clock()
    connection, origin = FailureWindow(5, 60, clock), FailureWindow(1, 300, clock)
    _fail([connection, origin], PinIncorrect("s", tries_left=None))
    with pytest.raises(RateLimited) as refused, pin_attempt([connection, origin]):
        pass
    assert refused.value.to_dict()["retryAfter"] == 300 and connection.retry_after() == 0


def test_windows_by_key_are_separate_per_key_and_kept() -> None:
    windows = WindowsByKey(1, 60, Clock())
    _fail([windows["token\nhttps://a.example"]], PinIncorrect("s", tries_left=None))
    assert windows["token\nhttps://a.example"].retry_after() == 60
    assert windows["token\nhttps://b.example"].retry_after() == 0
