"""A vendor's SKF library (GM/T 0016-2012) through ctypes: the calls a login needs, each checked.

Every call returns a SAR code; a non-zero one raises :class:`SkfError`. What the library hands
back is checked before it is used, so a library that returns garbage costs only its own devices:

- lengths: every out-length must fit the buffer handed in (a longer one is ``SKF_GARBAGE``);
- name lists: double-NUL terminated within the size the library gave, names printable;
- a ``BOOL`` it writes (GetPINInfo's default flag) goes into an 8-byte zeroed buffer, whatever
  its header says BOOL is (``long``: 8 bytes on LP64 in GmSSL's header; ``int`` in vendors'), and
  a ``BOOL`` passed in is a C ``long``, which a callee reading an ``int`` reads the same;
- on 32-bit Windows the functions are ``__stdcall`` (WinDLL), elsewhere the C convention.

ctypes releases the GIL during each foreign call, so one device's slow call holds up only its own
callers. A PIN is passed from its own buffer (a NUL-terminated copy in a ctypes buffer, wiped
after the call), never as a Python string.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cert_agent.drivers.skf import structs
from cert_agent.drivers.skf.returncodes import SkfError, garbage

ULONG = ctypes.c_uint32
HANDLE = ctypes.c_void_p
BOOL_IN = ctypes.c_long  # a BOOL argument: read the same by an `int` or a `long` callee
BOOL_OUT_BYTES = 8  # a BOOL result: room for the widest, zeroed first
MAX_LIST = 64 * 1024  # the longest name list or certificate believed
MAX_NAME = 256
USER_TYPE = 1
SGD_SM3 = 0x00000001
_STDCALL = sys.platform == "win32" and struct.calcsize("P") == 4

# name -> (argument types); every function returns ULONG (a SAR code)
_FUNCTIONS: dict[str, tuple[Any, ...]] = {
    "SKF_EnumDev": (BOOL_IN, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_ConnectDev": (ctypes.c_char_p, ctypes.POINTER(HANDLE)),
    "SKF_DisConnectDev": (HANDLE,),
    "SKF_GetDevInfo": (HANDLE, ctypes.POINTER(structs.DEVINFO)),
    "SKF_EnumApplication": (HANDLE, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_OpenApplication": (HANDLE, ctypes.c_char_p, ctypes.POINTER(HANDLE)),
    "SKF_CloseApplication": (HANDLE,),
    "SKF_ClearSecureState": (HANDLE,),
    "SKF_VerifyPIN": (HANDLE, ULONG, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_ChangePIN": (HANDLE, ULONG, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_GetPINInfo": (HANDLE, ULONG, ctypes.POINTER(ULONG), ctypes.POINTER(ULONG), ctypes.c_void_p),
    "SKF_EnumContainer": (HANDLE, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_OpenContainer": (HANDLE, ctypes.c_char_p, ctypes.POINTER(HANDLE)),
    "SKF_CloseContainer": (HANDLE,),
    "SKF_GetContainerType": (HANDLE, ctypes.POINTER(ULONG)),
    "SKF_ExportCertificate": (HANDLE, BOOL_IN, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_ExportPublicKey": (HANDLE, BOOL_IN, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_DigestInit": (HANDLE, ULONG, ctypes.c_void_p, ctypes.c_void_p, ULONG, ctypes.POINTER(HANDLE)),
    "SKF_Digest": (HANDLE, ctypes.c_void_p, ULONG, ctypes.c_void_p, ctypes.POINTER(ULONG)),
    "SKF_CloseHandle": (HANDLE,),
    "SKF_ECCSignData": (HANDLE, ctypes.c_void_p, ULONG, ctypes.POINTER(structs.ECCSIGNATUREBLOB)),
    "SKF_RSASignData": (HANDLE, ctypes.c_void_p, ULONG, ctypes.c_void_p, ctypes.POINTER(ULONG)),
}
REQUIRED = frozenset(_FUNCTIONS) - {"SKF_RSASignData", "SKF_ClearSecureState"}


class SkfLibrary:
    """One SKF library, loaded; ``missing`` names the calls it does not export."""

    def __init__(self, path: str) -> None:
        loader = ctypes.WinDLL if _STDCALL else ctypes.CDLL  # type: ignore[attr-defined,unused-ignore]
        self.path = path
        self._lib = loader(path)
        self._calls: dict[str, Callable[..., int]] = {}
        for name, argtypes in _FUNCTIONS.items():
            function = getattr(self._lib, name, None)
            if function is None:
                continue
            function.argtypes = argtypes
            function.restype = ULONG
            self._calls[name] = function
        self.missing = sorted(REQUIRED - self._calls.keys())

    def call(self, name: str, *args: Any) -> None:
        function = self._calls.get(name)
        if function is None:
            raise SkfError(name, 0x0A000003)  # SAR_NOTSUPPORTYETERR
        code = int(function(*args))
        if code != 0:
            raise SkfError(name, code)

    # --- two-call lists and blobs --------------------------------------------------------------

    def names(self, name: str, *handle: Any) -> list[str]:
        """A name list (devices, applications, containers): sized with NULL, then read."""
        size = ULONG(0)
        self.call(name, *handle, None, ctypes.byref(size))
        if not 0 < size.value <= MAX_LIST:
            raise garbage(name, f"a name list of {size.value} bytes")
        room = size.value
        buffer = ctypes.create_string_buffer(room + 2)
        self.call(name, *handle, buffer, ctypes.byref(size))
        if not 0 < size.value <= room:
            raise garbage(name, f"a name list of {size.value} bytes in {room}")
        return parse_name_list(buffer.raw[: size.value], name)

    def blob(self, name: str, handle: Any, flag: int) -> bytes:
        """A certificate or key blob: sized with NULL, then read."""
        size = ULONG(0)
        self.call(name, handle, flag, None, ctypes.byref(size))
        if not 0 < size.value <= MAX_LIST:
            raise garbage(name, f"a result of {size.value} bytes")
        room = size.value
        buffer = ctypes.create_string_buffer(room)
        self.call(name, handle, flag, buffer, ctypes.byref(size))
        if not 0 < size.value <= room:
            raise garbage(name, f"a result of {size.value} bytes in {room}")
        return buffer.raw[: size.value]

    # --- handles -------------------------------------------------------------------------------

    @contextmanager
    def device(self, name: str) -> Iterator[HANDLE]:
        handle = HANDLE()
        self.call("SKF_ConnectDev", name.encode("utf-8"), ctypes.byref(handle))
        try:
            yield handle
        finally:
            self._quietly("SKF_DisConnectDev", handle)

    @contextmanager
    def application(self, device: HANDLE, name: str) -> Iterator[HANDLE]:
        handle = HANDLE()
        self.call("SKF_OpenApplication", device, name.encode("utf-8"), ctypes.byref(handle))
        try:
            yield handle
        finally:
            if "SKF_ClearSecureState" in self._calls:
                self._quietly("SKF_ClearSecureState", handle)  # no login state survives a call
            self._quietly("SKF_CloseApplication", handle)

    @contextmanager
    def container(self, application: HANDLE, name: str) -> Iterator[HANDLE]:
        handle = HANDLE()
        self.call("SKF_OpenContainer", application, name.encode("utf-8"), ctypes.byref(handle))
        try:
            yield handle
        finally:
            self._quietly("SKF_CloseContainer", handle)

    def _quietly(self, name: str, handle: HANDLE) -> None:
        with suppress(SkfError):  # the device went away: its handles went with it
            self.call(name, handle)

    # --- what the driver asks ------------------------------------------------------------------

    def device_info(self, device: HANDLE) -> structs.DeviceInfo:
        info = structs.DEVINFO()
        self.call("SKF_GetDevInfo", device, ctypes.byref(info))
        return structs.device_info(info)

    def pin_info(self, application: HANDLE) -> tuple[int, int, bool]:
        """(the retry limit, the tries left, the PIN is still the default one)."""
        maximum, remain = ULONG(0), ULONG(0)
        is_default = ctypes.create_string_buffer(BOOL_OUT_BYTES)
        self.call("SKF_GetPINInfo", application, USER_TYPE, ctypes.byref(maximum), ctypes.byref(remain), is_default)
        if not 0 < maximum.value <= 255 or remain.value > maximum.value:
            raise garbage("SKF_GetPINInfo", f"{remain.value} tries left of {maximum.value}")
        return maximum.value, remain.value, any(is_default.raw)

    def verify_pin(self, application: HANDLE, pin: bytearray) -> int:
        """SKF_VerifyPIN as the user; raises SkfError, with the tries left the device reported."""
        retries = ULONG(0)
        with _c_string(pin) as text:
            try:
                self.call("SKF_VerifyPIN", application, USER_TYPE, text, ctypes.byref(retries))
            except SkfError as exc:
                raise exc.with_retries(retries.value) from None
        return retries.value

    def change_pin(self, application: HANDLE, old: bytearray, new: bytearray) -> None:
        retries = ULONG(0)
        with _c_string(old) as old_text, _c_string(new) as new_text:
            try:
                self.call("SKF_ChangePIN", application, USER_TYPE, old_text, new_text, ctypes.byref(retries))
            except SkfError as exc:
                raise exc.with_retries(retries.value) from None

    def container_type(self, container: HANDLE) -> int:
        kind = ULONG(0)
        self.call("SKF_GetContainerType", container, ctypes.byref(kind))
        return kind.value

    def sm2_digest(self, device: HANDLE, public_key: bytes, user_id: bytes, data: bytes) -> bytes:
        """SM3(Z || data), Z from the public key blob and the ID, computed by the device."""
        if len(public_key) != ctypes.sizeof(structs.ECCPUBLICKEYBLOB):
            raise garbage("SKF_ExportPublicKey", f"a public key of {len(public_key)} bytes")
        key = ctypes.create_string_buffer(public_key, len(public_key))
        ident = ctypes.create_string_buffer(user_id, len(user_id))
        handle = HANDLE()
        self.call("SKF_DigestInit", device, SGD_SM3, key, ident, len(user_id), ctypes.byref(handle))
        try:
            out, size = ctypes.create_string_buffer(64), ULONG(64)
            message = ctypes.create_string_buffer(data, len(data))
            self.call("SKF_Digest", handle, message, len(data), out, ctypes.byref(size))
        finally:
            self._quietly("SKF_CloseHandle", handle)
        if size.value != 32:
            raise garbage("SKF_Digest", f"an SM3 digest of {size.value} bytes")
        return out.raw[:32]

    def ecc_sign(self, container: HANDLE, digest: bytes) -> structs.ECCSIGNATUREBLOB:
        blob = structs.ECCSIGNATUREBLOB()
        data = ctypes.create_string_buffer(digest, len(digest))
        self.call("SKF_ECCSignData", container, data, len(digest), ctypes.byref(blob))
        return blob

    def rsa_sign(self, container: HANDLE, digest_info: bytes, modulus_bytes: int) -> bytes:
        size = ULONG(modulus_bytes)
        out = ctypes.create_string_buffer(modulus_bytes)
        data = ctypes.create_string_buffer(digest_info, len(digest_info))
        self.call("SKF_RSASignData", container, data, len(digest_info), out, ctypes.byref(size))
        if size.value != modulus_bytes:
            raise garbage("SKF_RSASignData", f"a signature of {size.value} bytes for a {modulus_bytes}-byte key")
        return out.raw[:modulus_bytes]


def parse_name_list(raw: bytes, call: str = "name list") -> list[str]:
    """A double-NUL terminated list of names; garbage (no end, unprintable, too long) is refused."""
    end = raw.find(b"\x00\x00")
    if end < 0:
        if raw.endswith(b"\x00") and raw.count(b"\x00") == 1:  # one name, single NUL: tolerated
            end = len(raw) - 1
        else:
            raise garbage(call, "a name list without its double NUL")
    names = [part for part in raw[:end].split(b"\x00") if part]
    result = []
    for part in names:
        try:
            text = part.decode("utf-8")
        except UnicodeDecodeError:
            raise garbage(call, "a name that is not UTF-8") from None
        if len(part) > MAX_NAME or not text.isprintable():
            raise garbage(call, "an unprintable or overlong name")
        result.append(text)
    return result


@contextmanager
def _c_string(pin: bytearray) -> Iterator[Any]:
    """The PIN NUL-terminated in a ctypes buffer of its own, wiped when the call ends."""
    if b"\x00" in pin:
        raise SkfError("PIN", 0x0A000026)  # SAR_PIN_INVALID: a C string ends at the first NUL
    buffer = (ctypes.c_char * (len(pin) + 1))()
    if pin:
        ctypes.memmove(buffer, (ctypes.c_char * len(pin)).from_buffer(pin), len(pin))
    try:
        yield buffer
    finally:
        ctypes.memset(buffer, 0, len(pin) + 1)
