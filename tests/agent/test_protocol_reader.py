"""Reading a request and its fields (``agent/protocol.py``) on its own; ``test_agent_protocol.py``
sends the same kinds of input to a running agent, ``test_fuzz_agent.py`` random ones."""

from __future__ import annotations

import base64

import pytest

from cert_agent.agent import protocol
from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.common.errors import BadJson, BadRequest

NONCE = base64.b64encode(bytes(32)).decode()


def test_a_request_is_read_with_its_id_method_and_params() -> None:
    request = protocol.parse_request('{"id": "a1", "method": "hello", "params": {"protocolVersions": [1]}}')
    assert request == protocol.Request("a1", "hello", {"protocolVersions": [1]})
    assert protocol.parse_request('{"id": 7, "method": "listCertificates"}').params == {}


@pytest.mark.parametrize(
    ("text", "request_id", "error", "field"),
    [
        pytest.param("[1]", None, BadJson, None, id="not an object"),
        pytest.param('{"id": 1, "method": "x"', None, BadJson, None, id="not JSON"),
        pytest.param('{"id": true, "method": "x"}', None, BadRequest, "id", id="boolean id"),
        pytest.param('{"id": "' + "i" * 65 + '", "method": "x"}', None, BadRequest, "id", id="id too long"),
        pytest.param('{"id": 3, "method": ""}', 3, BadRequest, "method", id="empty method"),
        pytest.param('{"id": 4, "method": "x", "params": []}', 4, BadRequest, "params", id="params not an object"),
    ],
)
def test_a_bad_request_names_its_id_and_field(
    text: str, request_id: int | None, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(protocol.RequestError) as caught:
        protocol.parse_request(text)
    assert caught.value.request_id == request_id and isinstance(caught.value.error, error)
    if field is not None:
        assert caught.value.error.to_dict()["field"] == field


def test_a_pin_is_read_into_a_wipeable_pin_and_its_error_never_holds_it() -> None:
    with protocol.pin_param({"pin": "Qd2026tax"}, "pin") as pin:
        assert pin.equals("Qd2026tax") and "Qd2026tax" not in repr(pin)
    with pytest.raises(BadRequest) as caught:
        protocol.pin_param({"pin": "9" * 65}, "pin")
    assert "9" * 65 not in str(caught.value.to_dict())


def test_a_pin_may_be_left_out_only_for_a_pin_pad() -> None:
    with protocol.pin_or_pad({}, "pin", pin_pad=True) as pin:
        assert pin is None
    with pytest.raises(BadRequest):
        protocol.pin_or_pad({}, "pin", pin_pad=False)


@pytest.mark.parametrize(("value", "expected"), [("0a1b", b"\x0a\x1b"), ("abc", b"\x0a\xbc")])
def test_a_cert_id_is_lower_case_hex(value: str, expected: bytes) -> None:
    assert protocol.cert_id_param({"certId": value}) == expected


@pytest.mark.parametrize("value", ["0A1B", "xyz", "", "a" * 257])
def test_other_cert_ids_are_refused(value: str) -> None:
    with pytest.raises(BadRequest):
        protocol.cert_id_param({"certId": value})


def test_a_nonce_is_44_to_512_printable_characters() -> None:
    assert protocol.nonce_param({"challengeNonce": NONCE}) == NONCE
    for bad in (NONCE[:43], "x" * 513, NONCE[:-1] + " ", 12):
        with pytest.raises(BadRequest):
            protocol.nonce_param({"challengeNonce": bad})


def test_a_pairing_challenge_is_16_to_64_bytes_of_base64_or_absent() -> None:
    assert protocol.pairing_challenge_param({}) is None
    assert protocol.pairing_challenge_param({"pairingChallenge": base64.b64encode(bytes(16)).decode()}) == bytes(16)
    for bad in (base64.b64encode(bytes(15)).decode(), base64.b64encode(bytes(65)).decode(), "not base64!", 5):
        with pytest.raises(BadRequest):
            protocol.pairing_challenge_param({"pairingChallenge": bad})


def test_an_algorithm_is_one_the_agent_knows_or_absent() -> None:
    assert protocol.algorithm_param({}) is None
    assert protocol.algorithm_param({"algorithm": "ES384"}) is SignatureAlgorithm.ES384
    with pytest.raises(BadRequest):
        protocol.algorithm_param({"algorithm": "HS256"})


def test_protocol_versions_are_a_list_of_integers_defaulting_to_this_one() -> None:
    assert protocol.protocol_versions_param({}) == [protocol.PROTOCOL_VERSION]
    for bad in ([True], "1", [1.0]):
        with pytest.raises(BadRequest):
            protocol.protocol_versions_param({"protocolVersions": bad})
