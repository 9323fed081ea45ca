"""Opening the right driver for each vendor library: ``open_driver(paths)``.

What a library is comes from the media catalog (an entry's ``interface``) or, for a library the
catalog does not name, from what it exports (``C_GetFunctionList``: PKCS#11; ``SKF_EnumDev``:
SKF, GM/T 0016), so a user never has to say which. Each interface has one :class:`DriverKind`;
``open_driver`` groups the libraries by kind and gives the agent one :class:`DriverSet` over them.
A library no kind speaks is a problem of that library only.

Test doubles are kinds too (``register``): they wrap a real driver behind the same interface
(``tests/doubles/``), rather than patching a driver's insides.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.errors import ModuleLoadFailed
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.models import LibraryProblem, PinStatus, Token, TokenCertificate
from cert_agent.drivers.pin import Pin

log = logging.getLogger("cert_agent.drivers")

PKCS11 = "pkcs11"
SKF = "skf"
INTERFACES = (PKCS11, SKF)
_EXPORTS = {PKCS11: "C_GetFunctionList", SKF: "SKF_EnumDev"}  # what a library of each interface exports


@dataclass(frozen=True)
class DriverKind:
    """One interface's driver: which libraries it takes and how it opens them."""

    name: str
    speaks: Callable[[str], bool]
    open: Callable[[Sequence[str]], TokenDriver]


def library_interface(path: str) -> str | None:
    """The interface ``path`` speaks: the catalog's word, else what it exports; None when it is
    neither (or cannot be loaded: the driver that tries says why)."""
    entry = default_catalog().for_module(path)
    if entry is not None:
        return entry.interface
    if not os.path.isfile(path):
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    return next((name for name, symbol in _EXPORTS.items() if hasattr(lib, symbol)), None)


def _open_pkcs11(paths: Sequence[str]) -> TokenDriver:
    from cert_agent.drivers.pkcs11 import Pkcs11Driver  # python-pkcs11 loads only here

    return Pkcs11Driver(paths)


def _open_skf(paths: Sequence[str]) -> TokenDriver:
    from cert_agent.drivers.skf import SkfDriver

    return SkfDriver(paths)


# The PKCS#11 kind also takes what it cannot tell (a missing file, not a library): its loader
# records why, as it always has.
_KINDS: list[DriverKind] = [
    DriverKind(SKF, lambda path: library_interface(path) == SKF, _open_skf),
    DriverKind(PKCS11, lambda path: library_interface(path) in (PKCS11, None), _open_pkcs11),
]


def kind(name: str) -> DriverKind:
    """The registered kind called ``name`` (the last registered of that name)."""
    return next(k for k in _KINDS if k.name == name)


def register(kind: DriverKind) -> None:
    """Put ``kind`` first: it is asked before the others whether it speaks a library."""
    _KINDS.insert(0, kind)


def open_driver(paths: Sequence[str]) -> DriverSet:
    """One driver over ``paths``, each library opened by the kind that speaks it."""
    groups: dict[str, tuple[DriverKind, list[str]]] = {}
    problems: list[LibraryProblem] = []
    for path in dict.fromkeys(paths):
        kind = next((k for k in _KINDS if k.speaks(path)), None)
        if kind is None:
            log.warning("no driver speaks %s (%s)", path, library_interface(path))
            problems.append(LibraryProblem(path, ModuleLoadFailed(f"{path}: no driver for its interface")))
            continue
        groups.setdefault(kind.name, (kind, []))[1].append(path)
    return DriverSet([kind.open(group) for kind, group in groups.values()], problems)


class DriverSet(TokenDriver):
    """Several drivers as one: listings are joined, and a call goes to the driver of its token's
    library."""

    def __init__(self, drivers: list[TokenDriver], problems: list[LibraryProblem]) -> None:
        self._drivers = drivers
        self.problems = problems + [p for d in drivers for p in d.problems]  # drivers record them as they load

    @property
    def modules(self) -> list[str]:
        return [m for d in self._drivers for m in d.modules]

    def tokens(self) -> list[Token]:
        return [t for d in self._drivers for t in d.tokens()]

    def certificates(self, token: Token) -> list[TokenCertificate]:
        return self._of(token).certificates(token)

    def prepare(self, token: Token) -> None:
        self._of(token).prepare(token)

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        self._of(token).verify_pin(token, pin)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        self._of(token).change_pin(token, old, new)

    def pin_status(self, token: Token) -> PinStatus:
        return self._of(token).pin_status(token)

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self._of(token).sign(token, cert_id, pin, data, algorithm)

    def rescan(self) -> None:
        for driver in self._drivers:
            driver.rescan()

    def close(self) -> None:
        for driver in self._drivers:
            driver.close()

    def _of(self, token: Token) -> TokenDriver:
        for driver in self._drivers:
            if token.module in driver.modules:
                return driver
        raise ModuleLoadFailed(token.module)
