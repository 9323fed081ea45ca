import json

import pytest

from cert_agent.common.taxpayer_id import TaxpayerIdKind, is_valid_uscc, parse_taxpayer_id, uscc_check_character
from tests.paths import TESTS

VECTORS = json.loads((TESTS / "vectors" / "uscc.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("code", VECTORS["valid"])
def test_published_codes_have_valid_check_characters(code: str) -> None:
    assert is_valid_uscc(code)
    assert uscc_check_character(code[:17]) == code[17]
    parsed = parse_taxpayer_id(code)
    assert parsed is not None and parsed.kind is TaxpayerIdKind.USCC and parsed.is_valid


@pytest.mark.parametrize("code", VECTORS["invalid_check_character"])
def test_a_changed_check_character_is_recognised_as_uscc_but_invalid(code: str) -> None:
    assert not is_valid_uscc(code)
    parsed = parse_taxpayer_id(code)
    assert parsed is not None and parsed.kind is TaxpayerIdKind.USCC and not parsed.is_valid


@pytest.mark.parametrize("text", VECTORS["not_a_uscc"])
def test_wrong_shapes_are_not_uscc(text: str) -> None:
    assert not is_valid_uscc(text)
    parsed = parse_taxpayer_id(text)
    assert parsed is None or parsed.kind is not TaxpayerIdKind.USCC


@pytest.mark.parametrize("text", VECTORS["legacy"])
def test_legacy_taxpayer_ids_of_15_17_20_characters_are_recognised(text: str) -> None:
    parsed = parse_taxpayer_id(text)
    assert parsed is not None and parsed.kind is TaxpayerIdKind.LEGACY


def test_check_character_refuses_a_body_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        uscc_check_character("91350100I000100Y4")
