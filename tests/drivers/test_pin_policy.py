import pickle

import pytest

from cert_agent.drivers.errors import PinPolicyViolation, PinRequired
from cert_agent.drivers.pin import Pin, check_new_pin


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("112233", "12345", "length"),
        ("112233", "12345678901234567", "length"),
        ("112233", "abc 123", "charset"),
        ("112233", "密码密码密码", "charset"),
        ("112233", "112233", "same_as_old"),
        ("112233", "88888888", "initial_pin"),
    ],
)
def test_new_pin_breaking_a_rule_is_refused_with_that_rule(old: str, new: str, rule: str) -> None:
    with pytest.raises(PinPolicyViolation) as caught:
        check_new_pin(Pin(old), Pin(new))
    assert caught.value.rule == rule
    assert caught.value.code == "PIN_POLICY"
    if rule != "initial_pin":  # the well-known initial PIN is named in its own rule's message
        assert new not in str(caught.value) and new not in repr(caught.value.to_dict())


@pytest.mark.parametrize("new", ["123456", "Ab1!xyz9", "1234567890123456"])
def test_new_pin_within_the_rules_passes(new: str) -> None:
    check_new_pin(Pin("88888888"), Pin(new))


def test_pin_never_shows_in_repr_str_or_format() -> None:
    pin = Pin("314159")
    assert "314159" not in repr(pin)
    assert "314159" not in str(pin)
    assert "314159" not in f"{pin} {pin!r}"


def test_pin_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Pin("314159"))


def test_wiped_pin_holds_nothing() -> None:
    with Pin("314159") as pin:
        assert pin.reveal() == b"314159"
    assert pin.reveal() == b""


def test_empty_pin_is_refused() -> None:
    with pytest.raises(PinRequired):
        Pin("")


def test_errors_cross_process_boundaries_with_their_fields() -> None:
    from cert_agent.drivers.errors import PinIncorrect

    for error in (PinIncorrect("serial", tries_left=3), PinPolicyViolation("length")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert again.to_dict() == error.to_dict() and str(again) == str(error)


def test_a_pin_crosses_the_worker_pipe_only_inside_a_typed_request() -> None:
    from cert_agent.agent.workers import protocol as wire

    request = wire.VerifyPin("module#serial", Pin("Qd2026tax"))
    envelope = wire.loads(wire.dumps(wire.Envelope(1, request, timeout=5.0)))
    assert isinstance(envelope, wire.Envelope)
    received = envelope.request
    assert isinstance(received, wire.VerifyPin) and received.pin is not None and received.pin.reveal() == b"Qd2026tax"
    assert "Qd2026tax" not in repr(received)
    with pytest.raises(TypeError):
        pickle.dumps(request)  # anywhere but the pipe, a Pin still refuses to be pickled
