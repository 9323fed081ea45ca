"""Taxpayer identifiers: the unified social credit code (GB 32100-2015) and older taxpayer IDs.

A unified social credit code (统一社会信用代码) has 18 characters from a 31-character alphabet
(digits and capital letters without I, O, Z, S, V). The last character is a check character:
with weights 3**i mod 31 over the first 17 characters, check = 31 - (sum mod 31), and 31 maps
to 0. Older taxpayer identification numbers (纳税人识别号) have 15, 17 or 20 characters and carry
no check character that this module can verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_SHAPE = re.compile(f"^[{USCC_ALPHABET}]{{18}}$")
_LEGACY_SHAPE = re.compile(r"^[0-9A-Z]{15}$|^[0-9A-Z]{17}$|^[0-9A-Z]{20}$")


class TaxpayerIdKind(StrEnum):
    USCC = "uscc"  # 统一社会信用代码
    LEGACY = "legacy"  # 旧纳税人识别号 (15/17/20 characters)


@dataclass(frozen=True)
class TaxpayerId:
    value: str
    kind: TaxpayerIdKind
    check_valid: bool  # always True for LEGACY: nothing to check

    @property
    def is_valid(self) -> bool:
        return self.check_valid


def uscc_check_character(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a code."""
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError("a unified social credit code body is 17 characters of its alphabet")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    return bool(_USCC_SHAPE.match(code)) and uscc_check_character(code[:17]) == code[17]


def parse_taxpayer_id(text: str) -> TaxpayerId | None:
    """Recognise a taxpayer ID; None when the text has neither shape.

    An 18-character code in the USCC alphabet is a USCC whose check character may be wrong
    (``check_valid`` says); 15/17/20 alphanumeric characters are a legacy ID.
    """
    value = text.strip().upper()
    if _USCC_SHAPE.match(value):
        return TaxpayerId(value, TaxpayerIdKind.USCC, is_valid_uscc(value))
    if _LEGACY_SHAPE.match(value):
        return TaxpayerId(value, TaxpayerIdKind.LEGACY, True)
    return None


def taxpayer_id_in_name(subject: x509.Name) -> TaxpayerId | None:
    """The taxpayer ID in a certificate's subject: serialNumber first (where the tax authority's
    CA puts it), then any organizationalUnitName that has the shape of one. The one reader both
    the agent (to show it) and the verifier (to log the taxpayer in) use."""
    from cryptography.x509.oid import NameOID  # here: the agent's own process never loads cryptography

    for oid in (NameOID.SERIAL_NUMBER, NameOID.ORGANIZATIONAL_UNIT_NAME):
        for attribute in subject.get_attributes_for_oid(oid):
            value = attribute.value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            found = parse_taxpayer_id(text)
            if found:
                return found
    return None
