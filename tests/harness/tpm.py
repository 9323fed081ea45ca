"""A second, real PKCS#11 implementation for the tests: tpm2-pkcs11 over a software TPM.

swtpm (the TPM) -> a private session D-Bus -> tpm2-abrmd (the resource manager, so the agent's
workers and the test can use the TPM at once) -> libtpm2_pkcs11 with a store in a temporary
directory. Tokens are made with tpm2_ptool; each gets an EC P-256 key made in the TPM and a
certificate for it from a CA of the test's own. The TPM's dictionary-attack protection really
locks: after ``max_tries`` wrong PINs every PIN is refused with CKR_PIN_LOCKED until the lockout
is cleared (`tpm2_dictionarylockout -c`), which is what a vendor's unlock tool does here.

Every process runs in the foreground of this harness and is stopped with it. The module and the
agent's workers find the TPM through the environment (``env``), which ``start`` exports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from softhsm_fixtures.pki import CertificateAuthority, Subject, Validity, issue_end_entity, make_intermediate, make_root
from tests.harness.agent import free_port

TPM_PACKAGES = ("swtpm", "tpm2-abrmd", "tpm2_ptool", "tpm2_dictionarylockout", "dbus-daemon")
SO_PIN = "87654321"


def tpm2_module() -> str | None:
    for candidate in sorted(Path("/usr/lib").glob("*/pkcs11/libtpm2_pkcs11.so")):
        return str(candidate)
    return None


def tpm_available() -> bool:
    return tpm2_module() is not None and all(shutil.which(tool) for tool in TPM_PACKAGES)


@dataclass(frozen=True)
class TpmToken:
    label: str
    pin: str
    key_id: bytes  # CKA_ID of the key and its certificate
    certificate: x509.Certificate


def _free_port_pair() -> int:
    """A port P with P + 1 free too (swtpm's server and control ports)."""
    import socket

    while True:
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


class SoftwareTpm:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store = directory / "store"
        self.port = _free_port_pair()
        self.module = tpm2_module() or "libtpm2_pkcs11.so"
        self._processes: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self._dbus_pid = 0
        now = dt.datetime.now(dt.UTC)
        self._root = make_root("TPM测试根CA", now)
        self.ca: CertificateAuthority = make_intermediate("TPM测试签发CA", self._root, now)

    def start(self) -> None:
        (self.directory / "state").mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        control = self.port + 1  # the swtpm TCTI expects the control port right after the server's
        self._spawn(
            "swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.directory / 'state'}",
            "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={control},bindaddr=127.0.0.1", "--flags", "not-need-init,startup-clear",
        )  # fmt: skip
        bus = subprocess.run(
            ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        address, pid = bus.stdout.split()[:2]
        self._dbus_pid = int(pid)
        self.env = {
            "DBUS_SESSION_BUS_ADDRESS": address,
            "TPM2TOOLS_TCTI": "tabrmd:bus_type=session",
            "TPM2_PKCS11_TCTI": "tabrmd:bus_type=session",
            "TPM2_PKCS11_STORE": str(self.store),
            "TPM2_PKCS11_LOG_LEVEL": "0",
            "TSS2_LOG": "all+NONE",  # the TSS libraries' own error lines for every wrong PIN
        }
        os.environ.update(self.env)
        self._wait_for_port(self.port)
        self._spawn("tpm2-abrmd", "--session", "--allow-root", f"--tcti=swtpm:host=127.0.0.1,port={self.port}")
        deadline = time.monotonic() + 15
        while subprocess.run(["tpm2_getrandom", "4"], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("tpm2-abrmd did not come up")
            time.sleep(0.1)
        self._tool("tpm2_ptool", "init", f"--path={self.store}")

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.kill()
            process.wait()
        if self._dbus_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._dbus_pid, signal.SIGTERM)
        for name in self.env:
            os.environ.pop(name, None)

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The TPM stops answering (its process stopped) and answers again when the block ends:
        a real medium that hangs, for every token it holds."""
        swtpm = self._processes[0]
        os.kill(swtpm.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(swtpm.pid, signal.SIGCONT)

    def add_token(self, label: str, pin: str, common_name: str, taxpayer_id: str) -> TpmToken:
        """A token with one EC P-256 key made in the TPM and a certificate for it."""
        self._tool(
            "tpm2_ptool", "addtoken", "--pid=1", f"--sopin={SO_PIN}", f"--userpin={pin}", f"--label={label}",
            f"--path={self.store}",
        )  # fmt: skip
        self._tool(
            "tpm2_ptool", "addkey", "--algorithm=ecc256", f"--label={label}", f"--userpin={pin}",
            "--key-label=login", "--id=login", f"--path={self.store}",
        )  # fmt: skip
        key_id = b"login"  # tpm2_ptool stores --id as the bytes of the text
        public_key = self._public_key(label, key_id)
        now = dt.datetime.now(dt.UTC)
        certificate = issue_end_entity(
            self.ca,
            Subject(common_name, taxpayer_id),
            public_key,
            Validity(now - dt.timedelta(days=1), now + dt.timedelta(days=365)),
        )
        pem = self.directory / f"{key_id.hex()}-{len(os.listdir(self.directory))}.pem"
        pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self._tool(
            "tpm2_ptool", "addcert", f"--label={label}", f"--key-id={key_id.hex()}", f"--path={self.store}", str(pem)
        )
        return TpmToken(label, pin, key_id, certificate)

    def set_lockout(self, max_tries: int) -> None:
        """The TPM locks after ``max_tries`` wrong authorisations, for a day (no recovery by time
        within a test)."""
        self._tool("tpm2_dictionarylockout", "--setup-parameters", f"--max-tries={max_tries}",
                   "--recovery-time=86400", "--lockout-recovery-time=86400")  # fmt: skip

    def clear_lockout(self) -> None:
        """What a vendor's unlock tool or an administrator does: the TPM counts from zero again."""
        self._tool("tpm2_dictionarylockout", "--clear-lockout")

    def _public_key(self, label: str, key_id: bytes) -> ec.EllipticCurvePublicKey:
        import PyKCS11

        from softhsm_fixtures.softhsm import _unwrap_octet_string

        lib = PyKCS11.PyKCS11Lib()
        lib.load(self.module)
        try:
            slot = next(s for s in lib.getSlotList(tokenPresent=True) if lib.getTokenInfo(s).label.strip() == label)
            session = lib.openSession(slot)
            template = [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_ID, key_id)]
            (public,) = session.findObjects(template)
            (point,) = session.getAttributeValue(public, [PyKCS11.CKA_EC_POINT], allAsBinary=True)
            session.closeSession()
        finally:
            lib.unload()
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unwrap_octet_string(bytes(point)))

    def _spawn(self, *command: str) -> None:
        log = (self.directory / f"{command[0]}.log").open("wb")
        self._processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | self.env)
        )

    def _tool(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ | self.env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed: {result.stderr.strip()[-400:]}")

    @staticmethod
    def _wait_for_port(port: int) -> None:
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
