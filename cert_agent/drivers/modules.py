"""Where PKCS#11 modules are found when the user names none."""

from __future__ import annotations

import os
from pathlib import Path

# Vendor modules for tax media install under many names; these are the generic ones that a
# Debian, Fedora or macOS desktop has. Users add a vendor's module with --module or the config.
KNOWN_MODULES = (
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/Library/OpenSC/lib/opensc-pkcs11.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
MODULES_ENV = "CERT_AGENT_MODULES"  # os.pathsep-separated list, for CI and packagers


def default_modules() -> list[str]:
    """The modules named in $CERT_AGENT_MODULES, else the known modules present on disk."""
    from_env = os.environ.get(MODULES_ENV)
    if from_env:
        return [path for path in from_env.split(os.pathsep) if path]
    return [path for path in KNOWN_MODULES if Path(path).exists()]
