"""Finding the tokens of loaded PKCS#11 modules, and telling them apart.

A token is named by its module and serial (``Token.token_id``), never by its slot: slots are
renumbered when media are re-inserted. :class:`Discovery` reads CK_TOKEN_INFO into driver-neutral
:class:`~cert_agent.drivers.models.Token` values and finds a token again where it is now.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import replace
from typing import Any

import pkcs11.exceptions as p11

from cert_agent.common.errors import CertAgentError
from cert_agent.drivers.catalog import default_catalog
from cert_agent.drivers.errors import TokenNotPresent
from cert_agent.drivers.models import Token, medium_of
from cert_agent.drivers.pkcs11.library import Library
from cert_agent.drivers.pkcs11.returncodes import PKCS11_ERRORS, pkcs11_errors
from cert_agent.drivers.pkcs11.sharing import ModuleSharing
from cert_agent.drivers.pkcs11.tokeninfo import flag_names, is_initialized, pin_status_of

log = logging.getLogger("cert_agent.pkcs11")


def _clean(text: str | bytes) -> str:
    """CK_TOKEN_INFO strings are fixed-width, padded with blanks, by some modules with NULs."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).replace("\x00", " ").strip()


def _distinct(tokens: list[Token]) -> list[Token]:
    """Tokens of one module whose serial is empty or repeated (cheap keys, tpm2-pkcs11's
    "0000000000000000") are told apart by their slot, which holds while they are present."""
    serials = [t.serial for t in tokens]
    return [
        replace(t, slot_tag=f"slot-{t.slot_id}") if not t.serial or serials.count(t.serial) > 1 else t for t in tokens
    ]


class Discovery:
    """The slots and tokens of the loaded modules (each call shares its module, see ``sharing``)."""

    def __init__(self, libraries: dict[str, Library], sharing: dict[str, ModuleSharing]) -> None:
        self._libraries = libraries
        self._sharing = sharing
        self._slots: dict[tuple[str, int], Any] = {}

    def module_tokens(self, module: str) -> list[Token]:
        """The present, initialized tokens of ``module``."""
        lib = self._libraries[module]
        with self._sharing[module].shared(), pkcs11_errors():
            slots = lib.get_slots(token_present=True)
        tokens = []
        for slot in slots:
            self._slots[(module, int(slot.slot_id))] = slot
            try:
                token, flags = self.token_at(module, int(slot.slot_id))
            except CertAgentError as exc:  # removed between the two calls
                log.info("slot %s of %s: %s", slot.slot_id, module, exc.describe())
                continue
            if is_initialized(flags):
                tokens.append(token)
        return _distinct(tokens)

    def token_at(self, module: str, slot_id: int) -> tuple[Token, int]:
        """The token in the slot now, and its CK_TOKEN_INFO flags."""
        token, flags, _ = self._read(module, slot_id)
        return token, flags

    def _read(self, module: str, slot_id: int) -> tuple[Token, int, Any]:
        """The token in the slot now, its flags, and python-pkcs11's token (to open sessions on):
        one C_GetTokenInfo."""
        with self._sharing[module].shared(), pkcs11_errors():
            slot = self.slot(module, slot_id)
            info = slot.get_token()
        label = _clean(info.label)
        model = _clean(info.model)
        manufacturer = _clean(info.manufacturer_id)
        entry = default_catalog().for_token(module, manufacturer, model)
        flags = int(info.flags)
        token = Token(
            module=module,
            slot_id=slot_id,
            label=label,
            serial=_clean(info.serial),
            manufacturer=manufacturer,
            model=model,
            # the catalog's word, else what the label says (for media the catalog does not name)
            medium=entry.medium if entry and entry.medium else medium_of(label, model),
            pin=pin_status_of(flags),
            flags=flag_names(flags),
            reader=_clean(slot.slot_description),
        )
        return token, flags, info

    def current(self, token: Token) -> Token:
        """The token as it is now (flags change with PIN failures; slots can be renumbered),
        or TokenNotPresent."""
        try:
            now, _ = self.token_at(token.module, token.slot_id)
            if now.serial == token.serial:
                return replace(now, slot_tag=token.slot_tag)
        except CertAgentError:
            pass
        for candidate in self.module_tokens(token.module):
            if candidate.token_id == token.token_id:
                return candidate
        raise TokenNotPresent(token.serial)

    def check(self, token: Token) -> tuple[Token, Any]:
        """The token check before a session: the same serial still in the token's slot, read
        with its PIN state by one C_GetTokenInfo; the token (its PIN state and flags as now) and
        python-pkcs11's token object to open the session on. Else the token where it is now
        (``current``), or TokenNotPresent."""
        with suppress(CertAgentError):
            with self._sharing[token.module].shared(), pkcs11_errors():
                handle = self.slot(token.module, token.slot_id).get_token()
            if _clean(handle.serial) == token.serial:
                flags = int(handle.flags)
                names = flag_names(flags)
                if names == token.flags:
                    return token, handle
                return replace(token, pin=pin_status_of(flags), flags=names), handle
        now = self.current(token)
        now_at, _, handle = self._read(now.module, now.slot_id)
        if now_at.serial != now.serial:  # swapped between the two reads
            raise TokenNotPresent(token.serial)
        return now, handle

    def present(self, token: Token) -> bool:
        try:
            self.current(token)
        except CertAgentError:
            return False
        return True

    def slot(self, module: str, slot_id: int) -> Any:
        slot = self._slots.get((module, slot_id))
        if slot is None:
            for found in self._libraries[module].get_slots(token_present=False):
                self._slots[(module, int(found.slot_id))] = found
            slot = self._slots.get((module, slot_id))
            if slot is None:
                raise p11.SlotIDInvalid()
        return slot

    @staticmethod
    def serials(lib: Library) -> set[bytes]:
        """The serials of the tokens the module shows (a lost one is missing here)."""
        serials = set()
        for slot in lib.get_slots(token_present=True):
            with suppress(*PKCS11_ERRORS):
                serials.add(bytes(slot.get_token().serial))
        return serials
