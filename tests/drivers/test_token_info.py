"""What the PKCS#11 driver makes of CK_TOKEN_INFO (``drivers/pkcs11/discovery.py``, ``tokeninfo.py``)."""

from __future__ import annotations

from cert_agent.drivers.models import Medium, PinState, Token
from cert_agent.drivers.pkcs11.tokeninfo import (
    CKF_PROTECTED_AUTHENTICATION_PATH,
    CKF_TOKEN_INITIALIZED,
    CKF_USER_PIN_FINAL_TRY,
    CKF_USER_PIN_INITIALIZED,
    CKF_USER_PIN_LOCKED,
    flag_names,
    pin_status_of,
)


def test_the_token_flag_bits_of_the_models_are_pkcs11s() -> None:
    import PyKCS11

    from cert_agent.drivers.pkcs11.tokeninfo import TOKEN_FLAGS

    assert {name: getattr(PyKCS11, name) for name in TOKEN_FLAGS} == TOKEN_FLAGS


def test_tokens_that_share_a_serial_or_have_none_are_told_apart_by_slot() -> None:
    # SoftHSM2 cannot show two tokens with one serial (a cloned token folder makes it abort), so
    # the rule is checked on the driver's own values; tpm2-pkcs11 (every token 0000000000000000)
    # is where it meets a real module (issue 12).
    from cert_agent.drivers.models import Medium
    from cert_agent.drivers.pkcs11.discovery import _distinct

    def token(slot: int, serial: str) -> Token:
        return Token("/usr/lib/x.so", slot, f"label {slot}", serial, "vendor", "model", Medium.OTHER)

    tokens = _distinct([token(1, "0000000000000000"), token(2, "0000000000000000"), token(3, "A1"), token(4, "")])
    ids = [t.token_id for t in tokens]
    assert ids == [
        "/usr/lib/x.so#0000000000000000#slot-1",
        "/usr/lib/x.so#0000000000000000#slot-2",
        "/usr/lib/x.so#A1",
        "/usr/lib/x.so##slot-4",
    ]


def test_token_info_strings_lose_their_blank_and_nul_padding() -> None:
    from cert_agent.drivers.pkcs11.discovery import _clean

    assert _clean("TPM2-PKCS11\x00\x00\x00   ") == "TPM2-PKCS11"
    assert _clean("  税务UKey 初心科技  ") == "税务UKey 初心科技"


def test_the_flags_become_a_pin_status_with_tries_left_only_where_a_flag_says_it() -> None:
    ready = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED
    assert pin_status_of(ready).state is PinState.OK and pin_status_of(ready).tries_left is None
    final = pin_status_of(ready | CKF_USER_PIN_FINAL_TRY)
    assert (final.state, final.tries_left) == (PinState.FINAL_TRY, 1)
    locked = pin_status_of(ready | CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY)
    assert (locked.state, locked.tries_left) == (PinState.LOCKED, 0)
    assert pin_status_of(CKF_TOKEN_INITIALIZED).state is PinState.NOT_INITIALIZED
    assert pin_status_of(ready | CKF_PROTECTED_AUTHENTICATION_PATH).pin_pad is True
    assert pin_status_of(ready).max_tries is None  # PKCS#11 has no field for the limit


def test_a_token_shows_the_flags_by_name_and_keeps_them_out_of_its_pin_state() -> None:
    names = flag_names(CKF_TOKEN_INITIALIZED | CKF_USER_PIN_LOCKED)
    token = Token("/m.so", 1, "l", "s", "v", "m", Medium.OTHER, pin_status_of(CKF_USER_PIN_INITIALIZED), names)
    assert token.to_dict()["flags"] == ["CKF_USER_PIN_LOCKED", "CKF_TOKEN_INITIALIZED"]
    assert token.to_dict()["pinState"] == "ok"  # the state is the PinStatus's, not the names'
