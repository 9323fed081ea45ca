"""Fuzz properties of what the SKF driver makes of a library's answers (name lists, fixed-width
strings, structures, signature blobs): garbage is SKF_GARBAGE, never a crash or a wrong value."""

from __future__ import annotations

import ctypes

from asn1crypto.algos import DSASignature
from hypothesis import given
from hypothesis import strategies as st

from cert_agent.drivers.errors import SkfGarbage
from cert_agent.drivers.skf import structs
from cert_agent.drivers.skf.driver import sm2_signature_der
from cert_agent.drivers.skf.library import parse_name_list
from cert_agent.drivers.sm2 import SM2_ORDER
from tests.harness.fuzz import CASES

printable = st.characters(min_codepoint=0x21, max_codepoint=0x9FFF, exclude_categories=("Cs", "Cc", "Cf", "Zs"))
names = st.text(printable, min_size=1, max_size=40).filter(str.isprintable)


@given(st.lists(names, max_size=8))
def test_a_well_formed_name_list_reads_back_as_its_names(listed: list[str]) -> None:
    CASES["skf name lists"] += 1
    raw = b"".join(name.encode("utf-8") + b"\x00" for name in listed) + b"\x00"
    assert parse_name_list(raw + (b"" if listed else b"\x00")) == listed


@given(st.binary(max_size=300))
def test_any_bytes_as_a_name_list_are_names_or_skf_garbage(raw: bytes) -> None:
    CASES["skf name lists"] += 1
    try:
        found = parse_name_list(raw)
    except SkfGarbage:
        return
    assert all(name and name.isprintable() for name in found)


@given(st.binary(min_size=294, max_size=294))
def test_any_devinfo_reads_as_strings(raw: bytes) -> None:
    CASES["skf structures"] += 1
    info = structs.device_info(structs.DEVINFO.from_buffer_copy(raw))
    assert all(isinstance(text, str) and "\x00" not in text for text in (info.label, info.serial, info.manufacturer))


@given(st.binary(min_size=128, max_size=128))
def test_any_signature_blob_is_a_der_signature_in_range_or_skf_garbage(raw: bytes) -> None:
    CASES["skf signatures"] += 1
    blob = structs.ECCSIGNATUREBLOB.from_buffer_copy(raw)
    try:
        der = sm2_signature_der(blob)
    except SkfGarbage:
        return
    parsed = DSASignature.load(der)
    r, s = parsed["r"].native, parsed["s"].native
    assert 0 < r < SM2_ORDER and 0 < s < SM2_ORDER
    assert (r, s) == (int.from_bytes(raw[32:64], "big"), int.from_bytes(raw[96:128], "big"))


@given(st.integers(1, SM2_ORDER - 1), st.integers(1, SM2_ORDER - 1))
def test_every_valid_r_and_s_right_aligned_become_their_der(r: int, s: int) -> None:
    CASES["skf signatures"] += 1
    blob = structs.ECCSIGNATUREBLOB()
    ctypes.memmove(ctypes.addressof(blob) + 32, r.to_bytes(32, "big"), 32)
    ctypes.memmove(ctypes.addressof(blob) + 96, s.to_bytes(32, "big"), 32)
    assert DSASignature.load(sm2_signature_der(blob)).native == {"r": r, "s": s}


def test_an_all_zero_blob_is_garbage() -> None:
    try:
        sm2_signature_der(structs.ECCSIGNATUREBLOB())
    except SkfGarbage as exc:
        assert exc.code == "SKF_GARBAGE"
    else:
        raise AssertionError("an all-zero blob was taken for a signature")
