"""Registering a double as a driver kind, from a ``sitecustomize.py`` on PYTHONPATH."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def register_double(name: str, wrap: Callable[[object], object]) -> None:
    """Open every library the PKCS#11 kind speaks with the real driver wrapped by ``wrap``."""
    from cert_agent.drivers import factory
    from cert_agent.drivers.interface import TokenDriver

    pkcs11 = factory.kind(factory.PKCS11)

    def open_wrapped(paths: Sequence[str]) -> TokenDriver:
        wrapped = wrap(pkcs11.open(paths))
        assert isinstance(wrapped, TokenDriver)
        return wrapped

    factory.register(factory.DriverKind(name, pkcs11.speaks, open_wrapped))
