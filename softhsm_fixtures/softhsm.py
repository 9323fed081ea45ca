"""SoftHSM2 as the stand-in for tax media: its own configuration, tokens and objects.

Every fixture set lives in a directory of its own with its own ``softhsm2.conf`` and token
directory; the system's SoftHSM configuration is never read or written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PyKCS11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from softhsm_fixtures.pki import PUBLIC_KEY

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
# SoftHSM2's file store keeps the token flags as a vendor attribute in token.object
# (big-endian: 8-byte type, 8-byte kind, then the value). See set_token_flags.
_TOKEN_FLAGS_ATTRIBUTE = struct.pack(">Q", 0x8000534B)


def find_module() -> str:
    override = os.environ.get("CERT_AGENT_SOFTHSM_MODULE")
    if override:
        return override
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise FileNotFoundError("libsofthsm2.so not found: install the softhsm2 package")


@dataclass(frozen=True)
class SoftHsmEnv:
    """A private SoftHSM2 installation: ``root/softhsm2.conf`` and ``root/tokens``."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "softhsm2.conf"

    @property
    def token_dir(self) -> Path:
        return self.root / "tokens"

    def create(self) -> None:
        if self.token_dir.exists():
            shutil.rmtree(self.token_dir)
        self.token_dir.mkdir(parents=True)
        self.conf.write_text(
            f"directories.tokendir = {self.token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = true\n",
            encoding="utf-8",
        )

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(self.conf)
        return env

    def run_util(self, *args: str) -> str:
        result = subprocess.run(
            ["softhsm2-util", *args], env=self.environ(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"softhsm2-util {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def init_token(self, label: str, so_pin: str, user_pin: str) -> None:
        self.run_util("--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", user_pin)

    @property
    def pulled_dir(self) -> Path:
        return self.root / "pulled-out"

    def pull_out(self, serial: str) -> None:
        """Take a token out as a user pulls a UKey: its store leaves the token directory in
        one rename, so a process using it sees it vanish between two calls or mid-call."""
        source = self._token_store(serial)
        self.pulled_dir.mkdir(exist_ok=True)
        source.rename(self.pulled_dir / serial)

    def plug_in(self, serial: str) -> None:
        """Put back a token taken out with :meth:`pull_out`."""
        (self.pulled_dir / serial).rename(self.token_dir / serial)

    def _token_store(self, serial: str) -> Path:
        found = self._token_file_holding(serial.encode("ascii").ljust(16, b" "))
        if found is None:
            raise FileNotFoundError(f"no SoftHSM token with serial {serial}")
        return found.parent

    def token_object_file(self, label: str) -> Path:
        found = self._token_file_holding(label.encode("utf-8").ljust(32, b" "))
        if found is None:
            raise FileNotFoundError(f"no SoftHSM token labelled {label!r}")
        return found

    def _token_file_holding(self, padded: bytes, patience: float = 1.0) -> Path | None:
        """The token.object file that holds ``padded`` (a serial or label, as SoftHSM2 pads it).

        SoftHSM2 rewrites the file at every login: read at that moment it can be empty, so a
        token in use by another process is looked for again, for up to ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            for path in self.token_dir.glob("*/token.object"):
                with contextlib.suppress(FileNotFoundError):  # pulled out meanwhile
                    if padded in path.read_bytes():
                        return path
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def set_token_flags(self, label: str, add: int) -> None:
        """Set token flags in SoftHSM's store while no process has the module loaded.

        SoftHSM2 reports stored flags such as CKF_USER_PIN_LOCKED faithfully but never sets
        them itself (it has no retry counter), so a fixture that must look like a locked or
        final-try medium is made this way: the real module then reports the state.
        """
        path = self.token_object_file(label)
        data = bytearray(path.read_bytes())
        at = data.find(_TOKEN_FLAGS_ATTRIBUTE)
        if at < 0:
            raise ValueError(f"{path}: token flags attribute not found")
        value_at = at + 16
        (flags,) = struct.unpack(">Q", data[value_at : value_at + 8])
        data[value_at : value_at + 8] = struct.pack(">Q", flags | add)
        path.write_bytes(bytes(data))


@contextmanager
def provisioning_library(module: str, env: SoftHsmEnv) -> Iterator[Any]:
    """The PKCS#11 library loaded against ``env`` (for provisioning only)."""
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(env.conf)
    lib = PyKCS11.PyKCS11Lib().load(module)
    try:
        yield lib
    finally:
        lib.unload()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@contextmanager
def user_session(lib: Any, label: str, pin: str) -> Iterator[tuple[Any, str]]:
    """A logged-in read-write session on the token labelled ``label``, and its serial."""
    slot = next(s for s in lib.getSlotList(tokenPresent=True) if lib.getTokenInfo(s).label.strip() == label)
    serial = lib.getTokenInfo(slot).serialNumber.strip()
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(pin)
    try:
        yield session, serial
    finally:
        session.logout()
        session.closeSession()


def generate_key_pair(session: Any, key_type: str, object_id: bytes, label: str) -> PUBLIC_KEY:
    """Generate a non-extractable key pair on the token; return its public key."""
    common = [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_ID, object_id), (PyKCS11.CKA_LABEL, label)]
    private = [
        *common,
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
        (PyKCS11.CKA_PRIVATE, True),
        (PyKCS11.CKA_SENSITIVE, True),
        (PyKCS11.CKA_EXTRACTABLE, False),
        (PyKCS11.CKA_SIGN, True),
    ]
    public = [*common, (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_VERIFY, True)]
    if key_type == "RSA-2048":
        public += [(PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
        pub, _ = session.generateKeyPair(public, private, mecha=PyKCS11.MechanismRSAGENERATEKEYPAIR)
        modulus, exponent = session.getAttributeValue(
            pub, [PyKCS11.CKA_MODULUS, PyKCS11.CKA_PUBLIC_EXPONENT], allAsBinary=True
        )
        numbers = rsa.RSAPublicNumbers(int.from_bytes(bytes(exponent), "big"), int.from_bytes(bytes(modulus), "big"))
        return numbers.public_key()
    curve: ec.EllipticCurve = {"EC-P256": ec.SECP256R1(), "EC-P384": ec.SECP384R1()}[key_type]
    params = _named_curve_der(curve)
    public += [(PyKCS11.CKA_EC_PARAMS, params)]
    pub, _ = session.generateKeyPair(public, private, mecha=PyKCS11.MechanismECGENERATEKEYPAIR)
    (point,) = session.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT], allAsBinary=True)
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, _unwrap_octet_string(bytes(point)))


def store_certificate(session: Any, certificate: x509.Certificate | bytes, object_id: bytes, label: str) -> None:
    """Store a certificate object (CKO_CERTIFICATE, X.509) sharing CKA_ID with its key."""
    if isinstance(certificate, x509.Certificate):
        der = certificate.public_bytes(serialization.Encoding.DER)
        subject = certificate.subject.public_bytes()
        issuer = certificate.issuer.public_bytes()
        serial = certificate.serial_number.to_bytes(20, "big").lstrip(b"\0")
    else:  # a deliberately broken "certificate" for the unparsable case
        der, subject, issuer, serial = certificate, b"", b"", b"\x01"
    session.createObject(
        [
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE),
            (PyKCS11.CKA_CERTIFICATE_TYPE, PyKCS11.CKC_X_509),
            (PyKCS11.CKA_TOKEN, True),
            (PyKCS11.CKA_PRIVATE, False),
            (PyKCS11.CKA_ID, object_id),
            (PyKCS11.CKA_LABEL, label),
            (PyKCS11.CKA_SUBJECT, subject),
            (PyKCS11.CKA_ISSUER, issuer),
            (PyKCS11.CKA_SERIAL_NUMBER, serial),
            (PyKCS11.CKA_VALUE, der),
        ]
    )


def _named_curve_der(curve: ec.EllipticCurve) -> bytes:
    from asn1crypto.keys import ECDomainParameters

    return bytes(ECDomainParameters(name="named", value=curve.name).dump())


def _unwrap_octet_string(data: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point (some modules give it bare)."""
    from asn1crypto.core import OctetString

    if data[:1] == b"\x04" and len(data) > 2 and data[1] == len(data) - 2:
        return bytes(OctetString.load(data).native)
    return data
