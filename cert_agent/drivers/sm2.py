"""SM2 signatures as the agent returns them: DER ``SEQUENCE {r, s}``, whatever a library hands
back (SKF's ECCSIGNATUREBLOB, a vendor PKCS#11 mechanism's raw ``r || s``). A value no SM2
signature can be (zero, past the curve's order) is refused, so garbage never reaches a page."""

from __future__ import annotations

SM2_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)  # GM/T 0003.5 n


def der_signature(r: int, s: int) -> bytes | None:
    """DER of ``r`` and ``s``; None when either is out of range (1 .. n - 1)."""
    if not (0 < r < SM2_ORDER and 0 < s < SM2_ORDER):
        return None
    return _der_sequence(_der_integer(r) + _der_integer(s))


def raw_to_der(raw: bytes) -> bytes | None:
    """``r || s`` (32 bytes each) as DER; None for anything else."""
    if len(raw) != 64:
        return None
    return der_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _der_integer(value: int) -> bytes:
    """A positive INTEGER in DER: big-endian, a leading zero where the top bit is set (<= 33 bytes)."""
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + bytes([len(body)]) + body


def _der_sequence(body: bytes) -> bytes:
    return b"\x30" + bytes([len(body)]) + body  # two 256-bit integers: always the short length form
