"""One PKCS#11 module loaded for use from several threads at once.

The agent serves each token on a thread of its own (a hung token must cost only its own
requests), so the module must be told, at C_Initialize, that threads will call it at the same
time: ``CKF_OS_LOCKING_OK`` in ``CK_C_INITIALIZE_ARGS`` (PKCS#11 v2.40 base, 5.4). Without it a
module may assume one thread; SoftHSM2, for one, then switches its own locking off.

python-pkcs11 (the binding, which releases the GIL during every PKCS#11 call) initializes modules
with no arguments and offers no way to pass them, and three more calls the agent needs are not in
its API the way the agent needs them: C_Login and C_SetPIN from a buffer the caller wipes (python-pkcs11
takes a ``str``, an immutable copy of the PIN nobody can wipe) or with no PIN at all (a PIN-pad
reader collects it), C_Logout on a session the caller keeps, and C_Finalize for a module that must be
re-initialized to see new tokens. :class:`Library` is python-pkcs11's library object with those
made through the module's own function list (C_GetFunctionList) with ctypes, which releases the
GIL during foreign calls too.

The signing path is made there as well, by handle: finding the key (C_FindObjects with the key's
class, CKA_ID and key type in one template) and C_SignInit/C_Sign. python-pkcs11 turns every
object it finds into a Python class built for it, reading ten attributes to choose its bases (one
by one where the module refuses the bulk read, as SoftHSM2 does for attributes it does not know):
on SoftHSM2 that was a third of a signature's time. Everything else (slots, tokens, sessions,
listing objects and their attributes) is python-pkcs11's.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from pkcs11 import _pkcs11

_PACK = 1 if sys.platform == "win32" else 0  # cryptoki.h packs its structures to 1 byte on Windows
CKF_OS_LOCKING_OK = 0x00000002
CKR_OK = 0
CKR_CRYPTOKI_NOT_INITIALIZED = 0x00000190

_RV = ctypes.c_ulong
_ULONG = ctypes.c_ulong
_FUNCTION = ctypes.CFUNCTYPE  # cryptoki's calling convention is cdecl, on Windows too


class _InitializeArgs(ctypes.Structure):
    _pack_ = _PACK
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", _ULONG),
        ("pReserved", ctypes.c_void_p),
    ]


# CK_FUNCTION_LIST: a CK_VERSION (two bytes), then the functions in the specification's order.
_FUNCTIONS = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList", "C_GetSlotInfo",
    "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken", "C_InitPIN", "C_SetPIN",
    "C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
    "C_SetOperationState", "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
    "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects",
    "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit",
    "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestKey",
    "C_DigestFinal", "C_SignInit", "C_Sign",
)  # fmt: skip
CKU_USER = 1
CKA_CLASS = 0x000
CKA_ID = 0x102
CKA_KEY_TYPE = 0x100
CKO_PRIVATE_KEY = 3
MAX_MECHANISMS = 4096
MAX_SIGNATURE = 4096


class _FunctionList(ctypes.Structure):
    _pack_ = _PACK
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)] + [(name, ctypes.c_void_p) for name in _FUNCTIONS]


_Initialize = _FUNCTION(_RV, ctypes.c_void_p)
_Finalize = _FUNCTION(_RV, ctypes.c_void_p)
_SetPIN = _FUNCTION(_RV, _ULONG, ctypes.c_void_p, _ULONG, ctypes.c_void_p, _ULONG)
_Login = _FUNCTION(_RV, _ULONG, _ULONG, ctypes.c_void_p, _ULONG)
_Logout = _FUNCTION(_RV, _ULONG)
_GetMechanismList = _FUNCTION(_RV, _ULONG, ctypes.c_void_p, ctypes.POINTER(_ULONG))
_GetAttributeValue = _FUNCTION(_RV, _ULONG, _ULONG, ctypes.c_void_p, _ULONG)
_FindObjectsInit = _FUNCTION(_RV, _ULONG, ctypes.c_void_p, _ULONG)
_FindObjects = _FUNCTION(_RV, _ULONG, ctypes.POINTER(_ULONG), _ULONG, ctypes.POINTER(_ULONG))
_FindObjectsFinal = _FUNCTION(_RV, _ULONG)
_SignInit = _FUNCTION(_RV, _ULONG, ctypes.c_void_p, _ULONG)
_Sign = _FUNCTION(_RV, _ULONG, ctypes.c_void_p, _ULONG, ctypes.c_void_p, ctypes.POINTER(_ULONG))


class _Attribute(ctypes.Structure):  # CK_ATTRIBUTE
    _pack_ = _PACK
    _fields_ = [("type", _ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", _ULONG)]


class _Mechanism(ctypes.Structure):  # CK_MECHANISM
    _pack_ = _PACK
    _fields_ = [("mechanism", _ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", _ULONG)]


class _PssParams(ctypes.Structure):  # CK_RSA_PKCS_PSS_PARAMS
    _pack_ = _PACK
    _fields_ = [("hashAlg", _ULONG), ("mgf", _ULONG), ("sLen", _ULONG)]


class ReturnCode(Exception):
    """A call made here did not return CKR_OK; ``code`` is the CK_RV."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CKR_0x{code:08X}")
        self.code = code


def _check(rv: int) -> None:
    if rv != CKR_OK:
        raise ReturnCode(rv)


def _address(value: Any) -> Any:
    """A ctypes object's address as CK_VOID_PTR (for a CK_ATTRIBUTE's pValue)."""
    return ctypes.cast(ctypes.byref(value), ctypes.c_void_p)


def _pointer(pin: bytearray | None) -> tuple[Any, int]:
    """The PIN's own buffer for the C call (no copy), or NULL for a PIN pad."""
    if pin is None:
        return None, 0
    return (ctypes.c_ubyte * len(pin)).from_buffer(pin), len(pin)


class _ModuleFunctions:
    """The module's own function table, for the calls python-pkcs11 does not make our way."""

    def __init__(self, path: str) -> None:
        self._dll = ctypes.CDLL(path)  # the same loaded image python-pkcs11 opens (dlopen counts)
        table = ctypes.POINTER(_FunctionList)()
        get_function_list = self._dll.C_GetFunctionList
        get_function_list.restype = _RV
        get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        _check(get_function_list(ctypes.byref(table)))
        functions = table.contents
        self.initialize = _Initialize(functions.C_Initialize)
        self.finalize = _Finalize(functions.C_Finalize)
        self.set_pin = _SetPIN(functions.C_SetPIN)
        self.login = _Login(functions.C_Login)
        self.logout = _Logout(functions.C_Logout)
        self.get_mechanism_list = _GetMechanismList(functions.C_GetMechanismList)
        self.get_attribute_value = _GetAttributeValue(functions.C_GetAttributeValue)
        self.find_objects_init = _FindObjectsInit(functions.C_FindObjectsInit)
        self.find_objects = _FindObjects(functions.C_FindObjects)
        self.find_objects_final = _FindObjectsFinal(functions.C_FindObjectsFinal)
        self.sign_init = _SignInit(functions.C_SignInit)
        self.sign = _Sign(functions.C_Sign)


class Library(_pkcs11.lib):
    """python-pkcs11's ``lib`` for ``path``, initialized for threads (``CKF_OS_LOCKING_OK``).

    Make one per module and process (a module is initialized once per process).
    """

    def __init__(self, path: str) -> None:
        self._functions = _ModuleFunctions(path)
        super().__init__(path)  # calls initialize() below, then C_GetInfo

    def initialize(self) -> None:
        args = _InitializeArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
        _check(self._functions.initialize(ctypes.byref(args)))

    def finalize(self) -> None:
        rv = self._functions.finalize(None)
        if rv not in (CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED):
            _check(rv)

    def reinitialize(self) -> None:
        """C_Finalize then C_Initialize: every session of the module ends."""
        self.finalize()
        self.initialize()

    def login(self, session: Any, pin: bytearray | None) -> None:
        """C_Login as the user on a python-pkcs11 session opened without a PIN; ``pin`` None: the
        reader's PIN pad collects it. Raises :class:`ReturnCode`."""
        data, length = _pointer(pin)
        _check(self._functions.login(session.handle, CKU_USER, data, length))

    def logout(self, session: Any) -> None:
        _check(self._functions.logout(session.handle))

    def mechanism_list(self, slot_id: int) -> frozenset[int]:
        """C_GetMechanismList as plain numbers (vendors' CKM_VENDOR_DEFINED + n too, which
        python-pkcs11's Mechanism enum cannot hold)."""
        count = _ULONG(0)
        _check(self._functions.get_mechanism_list(slot_id, None, ctypes.byref(count)))
        if count.value > MAX_MECHANISMS:
            raise ReturnCode(0x5)  # CKR_GENERAL_ERROR: a module claiming that many is broken
        mechanisms = (_ULONG * max(count.value, 1))()
        _check(self._functions.get_mechanism_list(slot_id, mechanisms, ctypes.byref(count)))
        return frozenset(int(m) for m in mechanisms[: min(count.value, len(mechanisms))])

    def key_type(self, session: Any, key: Any) -> int:
        """The key object's CKA_KEY_TYPE as a number (a vendor's value too)."""
        value = _ULONG(0)
        template = _Attribute(CKA_KEY_TYPE, _address(value), ctypes.sizeof(value))
        _check(self._functions.get_attribute_value(session.handle, key.handle, ctypes.byref(template), 1))
        return int(value.value)

    def private_key(self, session: Any, cert_id: bytes, key_type: int) -> int | None:
        """The handle of a private key with CKA_ID ``cert_id`` and CKA_KEY_TYPE ``key_type`` (a
        vendor's value too), or None: C_FindObjectsInit, one C_FindObjects, C_FindObjectsFinal."""
        object_class = _ULONG(CKO_PRIVATE_KEY)
        wanted_type = _ULONG(key_type)
        identifier = ctypes.create_string_buffer(cert_id, len(cert_id))
        template = (_Attribute * 3)(
            _Attribute(CKA_CLASS, _address(object_class), ctypes.sizeof(object_class)),
            _Attribute(CKA_ID, _address(identifier), len(cert_id)),
            _Attribute(CKA_KEY_TYPE, _address(wanted_type), ctypes.sizeof(wanted_type)),
        )
        _check(self._functions.find_objects_init(session.handle, template, 3))
        found, count = _ULONG(0), _ULONG(0)
        try:
            _check(self._functions.find_objects(session.handle, ctypes.byref(found), 1, ctypes.byref(count)))
        finally:
            self._functions.find_objects_final(session.handle)  # its own failure changes nothing found
        return int(found.value) if count.value == 1 else None

    def sign_with(
        self, session: Any, key: int, mechanism: int, data: bytes, pss: tuple[int, int, int] | None = None
    ) -> bytes:
        """C_SignInit with ``mechanism`` (and, for RSA-PSS, its ``pss`` parameters: hash
        mechanism, MGF, salt length) on the key handle ``key``, then one C_Sign into a buffer
        large enough for any signature."""
        spec = _Mechanism(mechanism, None, 0)
        if pss is not None:
            parameters = _PssParams(*pss)
            spec.pParameter = _address(parameters)
            spec.ulParameterLen = ctypes.sizeof(parameters)
        _check(self._functions.sign_init(session.handle, ctypes.byref(spec), key))
        message = ctypes.create_string_buffer(data, len(data))
        size = _ULONG(MAX_SIGNATURE)
        out = ctypes.create_string_buffer(MAX_SIGNATURE)
        _check(self._functions.sign(session.handle, message, len(data), out, ctypes.byref(size)))
        if size.value > MAX_SIGNATURE:
            raise ReturnCode(0x5)
        return out.raw[: size.value]

    def set_pin(self, session: Any, old: bytearray | None, new: bytearray | None) -> None:
        """C_SetPIN; both None: the reader's PIN pad asks for the old and the new PIN."""
        old_data, old_length = _pointer(old)
        new_data, new_length = _pointer(new)
        _check(self._functions.set_pin(session.handle, old_data, old_length, new_data, new_length))
