"""The PKCS#11 driver (``driver.Pkcs11Driver``) and its parts; only this package imports python-pkcs11."""

from cert_agent.drivers.pkcs11.driver import Pkcs11Driver

__all__ = ["Pkcs11Driver"]
