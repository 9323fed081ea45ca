"""SM2 signatures checked independently of the project's code: the ``openssl`` command, with the
GM/T 0009 default ID given explicitly (OpenSSL 3 uses an empty ID unless told)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

DISTID = "distid:1234567812345678"


def sm2_verifies(certificate_der: bytes, data: bytes, signature_der: bytes, distid: str = DISTID) -> bool:
    """Does ``signature_der`` (DER r, s) sign SM3(Z || data) for the certificate's key and the ID?"""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "cert.der").write_bytes(certificate_der)
        (folder / "data").write_bytes(data)
        (folder / "sig").write_bytes(signature_der)
        subprocess.run(
            ["openssl", "x509", "-inform", "DER", "-in", str(folder / "cert.der"), "-pubkey", "-noout",
             "-out", str(folder / "pub.pem")],
            check=True, capture_output=True,
        )  # fmt: skip
        done = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", distid, "-pubin",
             "-inkey", str(folder / "pub.pem"), "-in", str(folder / "data"), "-sigfile", str(folder / "sig")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.returncode == 0 and "Verified Successfully" in done.stdout
