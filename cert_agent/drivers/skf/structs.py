"""The SKF structures the agent reads (GM/T 0016-2012, packed as ``#pragma pack(1)``), and their
sizes checked against the standard's: DEVINFO 294 bytes, ECCPUBLICKEYBLOB 132, ECCSIGNATUREBLOB
128. 256-bit values stand right-aligned in the 64-byte fields."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

ULONG = ctypes.c_uint32


class VERSION(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class DEVINFO(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("Version", VERSION),
        ("Manufacturer", ctypes.c_char * 64),
        ("Issuer", ctypes.c_char * 64),
        ("Label", ctypes.c_char * 32),
        ("SerialNumber", ctypes.c_char * 32),
        ("HWVersion", VERSION),
        ("FirmwareVersion", VERSION),
        ("AlgSymCap", ULONG),
        ("AlgAsymCap", ULONG),
        ("AlgHashCap", ULONG),
        ("DevAuthAlgId", ULONG),
        ("TotalSpace", ULONG),
        ("FreeSpace", ULONG),
        ("MaxECCBufferSize", ULONG),
        ("MaxBufferSize", ULONG),
        ("Reserved", ctypes.c_ubyte * 64),
    ]


class ECCPUBLICKEYBLOB(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("BitLen", ULONG), ("XCoordinate", ctypes.c_ubyte * 64), ("YCoordinate", ctypes.c_ubyte * 64)]


class ECCSIGNATUREBLOB(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("r", ctypes.c_ubyte * 64), ("s", ctypes.c_ubyte * 64)]


assert ctypes.sizeof(DEVINFO) == 294 and ctypes.sizeof(ECCPUBLICKEYBLOB) == 132
assert ctypes.sizeof(ECCSIGNATUREBLOB) == 128


@dataclass(frozen=True)
class DeviceInfo:
    label: str
    serial: str
    manufacturer: str
    issuer: str


def device_info(info: DEVINFO) -> DeviceInfo:
    return DeviceInfo(_text(info.Label), _text(info.SerialNumber), _text(info.Manufacturer), _text(info.Issuer))


def _text(raw: bytes) -> str:
    """A fixed-width string field: NUL- or blank-padded, UTF-8 (GBK from some vendors)."""
    raw = bytes(raw).split(b"\x00", 1)[0]
    for encoding in ("utf-8", "gbk"):
        try:
            return raw.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace").strip()
