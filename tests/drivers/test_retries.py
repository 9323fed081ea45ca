"""The one tries-left rule (``drivers/retries.py``) and the daemon's accounting that feeds it
(``agent/tokens/pins.py``). The same rules through a running agent: ``agent/test_pin_shares.py``,
``agent/test_agent_protocol.py``, ``agent/test_agent_hardening.py``."""

from __future__ import annotations

import pytest

from cert_agent.agent.errors import PinTriesReserved
from cert_agent.agent.tokens.pins import USER_ACTION, PinAccounting
from cert_agent.agent.workers.protocol import TokenView
from cert_agent.drivers.errors import PinIncorrect, PinLocked
from cert_agent.drivers.models import Medium, PinState, PinStatus, Token
from cert_agent.drivers.retries import retry_limit, tries_left

SITE_A, SITE_B = "https://a.example", "https://b.example"


def _token(pin: PinStatus | None = None, module: str = "/opt/unknown/lib.so") -> Token:
    return Token(module, 0, "label", "serial", "vendor", "model", Medium.TAX_UKEY, pin or PinStatus())


def test_the_limit_is_the_mediums_then_the_catalogs_then_the_configured_one() -> None:
    assert retry_limit(_token(PinStatus(max_tries=6)), configured=10) == 6
    catalogued = _token(module="/opt/test-vendor/lib/libtestukey-pkcs11.so")  # media.json's test entry: 10
    assert retry_limit(catalogued, configured=3) == 10
    assert retry_limit(_token(), configured=10) == 10
    assert retry_limit(_token(), configured=None) is None


def test_tries_left_are_the_lower_of_the_mediums_word_and_the_daemons_count() -> None:
    assert tries_left(None, 10, 3) == 7
    assert tries_left(2, 10, 3) == 2  # the medium knows better
    assert tries_left(None, None, 3) is None
    assert tries_left(None, 10, 10) is None  # the count never says 0: only the medium locks


def test_a_wrong_pin_counts_and_the_known_limit_answers_locked() -> None:
    pins = PinAccounting(configured_limit=3, origins=1)
    token = _token()
    first = pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None))
    assert isinstance(first, PinIncorrect) and first.tries_left == 2
    pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None))
    assert isinstance(pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None)), PinLocked)


def test_a_right_pin_starts_the_counts_again_and_ends_a_lock_only_an_answer_told() -> None:
    pins = PinAccounting(configured_limit=10, origins=1)
    token = _token()
    pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None))
    pins.locked(token.token_id)
    assert pins.shown(TokenView(token, ())).token.pin_state is PinState.LOCKED
    pins.right_pin(token.token_id)
    assert pins.wrong_in_a_row(token.token_id) == 0
    assert pins.shown(TokenView(token, ())).token.pin_state is PinState.OK


def test_no_page_spends_the_last_try_but_the_user_may() -> None:
    pins = PinAccounting(configured_limit=3, origins=1)
    token = _token()
    pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None))
    pins.wrong_pin(token, USER_ACTION, PinIncorrect("s", tries_left=None))
    assert pins.shown(TokenView(token, ())).token.pin_state is PinState.FINAL_TRY
    with pytest.raises(PinTriesReserved):
        pins.admit(token, SITE_B)
    pins.admit(token, USER_ACTION)  # no refusal


def test_each_origin_spends_only_its_share_so_the_others_keep_two() -> None:
    pins = PinAccounting(configured_limit=10, origins=3)
    token = _token()
    share = pins.origin_share(token)
    assert share == 4  # (10 - 2) // (3 - 1)
    for _ in range(share):
        pins.admit(token, SITE_A)
        pins.wrong_pin(token, SITE_A, PinIncorrect("s", tries_left=None))
    with pytest.raises(PinTriesReserved):
        pins.admit(token, SITE_A)
    pins.admit(token, SITE_B)  # another origin still may
