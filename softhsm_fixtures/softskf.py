"""The software SKF device's store (``softskf/softskf.c``): provisioning devices, applications and
containers, and pulling a device out, as ``softhsm.py`` does for SoftHSM2.

A device is a folder of ``$SOFTSKF_DIR``; it is inserted while the folder exists. The library is
``softskf/lib/libsoftskf.so``, built by ``softskf/build.sh`` (the project's setup runs it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
LIBRARY = REPOSITORY / "softskf" / "lib" / "libsoftskf.so"
SM2_CONTAINER = 2
RSA_CONTAINER = 1


def softskf_library() -> str:
    """The built library, built now if the setup has not (a checkout used without it)."""
    if not LIBRARY.exists() or LIBRARY.stat().st_mtime < (REPOSITORY / "softskf" / "softskf.c").stat().st_mtime:
        subprocess.run(["bash", str(REPOSITORY / "softskf" / "build.sh")], check=True)
    return str(LIBRARY)


@dataclass(frozen=True)
class SoftSkfStore:
    root: Path

    def environ(self) -> dict[str, str]:
        return {"SOFTSKF_DIR": str(self.root)}

    def device(self, name: str) -> Path:
        return self.root / name

    def add_device(self, name: str, *, label: str, serial: str, manufacturer: str, issuer: str = "") -> Path:
        device = self.device(name)
        device.mkdir(parents=True, exist_ok=False)
        lines = [f"label={label}", f"serial={serial}", f"manufacturer={manufacturer}", f"issuer={issuer}"]
        (device / "device.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return device

    def add_application(self, device: str, app: str, *, pin: str, max_tries: int, is_default: bool) -> Path:
        folder = self.device(device) / app
        folder.mkdir()
        digest = hashlib.sha256(pin.encode("utf-8")).hexdigest()
        state = f"user={digest}\nmax={max_tries}\nremain={max_tries}\ndefault={int(is_default)}\n"
        (folder / "pin.conf").write_text(state, encoding="utf-8")
        return folder

    def add_container(self, device: str, app: str, name: str, *, kind: int, key: Path, certificate_der: bytes) -> None:
        folder = self.device(device) / app / name
        folder.mkdir()
        (folder / "type").write_text(str(kind), encoding="ascii")
        shutil.copyfile(key, folder / "sign.key")
        os.chmod(folder / "sign.key", 0o600)
        (folder / "sign.der").write_bytes(certificate_der)

    def pin_state(self, device: str, app: str) -> dict[str, str]:
        """What the device keeps of the user PIN (its counters), read as the device reads it."""
        text = (self.device(device) / app / "pin.conf").read_text(encoding="utf-8")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def misbehave(self, device: str, mode: str | None) -> None:
        """Make the device return garbage (oversize-length, short-cert, zero-signature,
        bad-name-list), or behave again (None)."""
        path = self.device(device) / "misbehave"
        if mode is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(f"mode={mode}\n", encoding="ascii")

    def pull_out(self, device: str) -> Path:
        """Remove the device (its folder moves aside); ``plug_in`` puts it back."""
        aside = self.root.parent / f"{self.root.name}-unplugged" / device
        aside.parent.mkdir(exist_ok=True)
        self.device(device).rename(aside)
        return aside

    def plug_in(self, device: str) -> None:
        (self.root.parent / f"{self.root.name}-unplugged" / device).rename(self.device(device))
