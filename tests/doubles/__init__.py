"""Test doubles at the driver interface (``cert_agent.drivers.interface.TokenDriver``).

Each wraps the real PKCS#11 driver and changes only the behaviour no real part here can produce
(its module's docstring says which, and why). A double is loaded into the agent's worker
processes by putting its folder on PYTHONPATH: its ``sitecustomize.py`` registers it as a
driver kind (``cert_agent.drivers.factory.register``), so ``open_driver`` opens it instead of the
plain PKCS#11 driver. Nothing patches a driver's private names.
"""

from __future__ import annotations

from cert_agent.common.algorithms import SignatureAlgorithm
from cert_agent.drivers.interface import TokenDriver
from cert_agent.drivers.models import PinStatus, Token, TokenCertificate
from cert_agent.drivers.pin import Pin


class WrappedDriver(TokenDriver):
    """Every call passed to ``inner``; a double overrides what it changes."""

    def __init__(self, inner: TokenDriver) -> None:
        self.inner = inner
        self.problems = inner.problems

    @property
    def modules(self) -> list[str]:
        return self.inner.modules

    def tokens(self) -> list[Token]:
        return self.inner.tokens()

    def certificates(self, token: Token) -> list[TokenCertificate]:
        return self.inner.certificates(token)

    def prepare(self, token: Token) -> None:
        self.inner.prepare(token)

    def verify_pin(self, token: Token, pin: Pin | None) -> None:
        self.inner.verify_pin(token, pin)

    def change_pin(self, token: Token, old: Pin | None, new: Pin | None) -> None:
        self.inner.change_pin(token, old, new)

    def pin_status(self, token: Token) -> PinStatus:
        return self.inner.pin_status(token)

    def sign(self, token: Token, cert_id: bytes, pin: Pin | None, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self.inner.sign(token, cert_id, pin, data, algorithm)

    def rescan(self) -> None:
        self.inner.rescan()

    def close(self) -> None:
        self.inner.close()
