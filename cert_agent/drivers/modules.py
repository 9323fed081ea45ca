"""Where vendor libraries (PKCS#11 modules, SKF libraries) are found when the user names none: the
media catalog's libraries for this OS that are present on disk (``catalog.py``, ``media.json``)."""

from __future__ import annotations

import os
from pathlib import Path

from cert_agent.drivers.catalog import default_catalog

MODULES_ENV = "CERT_AGENT_MODULES"  # os.pathsep-separated list, for CI and packagers


def default_modules() -> list[str]:
    """The modules named in $CERT_AGENT_MODULES, else the catalog's modules present on disk."""
    from_env = os.environ.get(MODULES_ENV)
    if from_env:
        return [path for path in from_env.split(os.pathsep) if path]
    return [path for path in default_catalog().default_modules() if Path(path).exists()]
