"""Two programs from one source tree: a taxpayer's desktop install never pulls the verifier's
dependencies, and a server install never needs python-pkcs11, pyscard or a C compiler."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import ROOT

DESKTOP_ONLY = {"python-pkcs11", "pyscard", "platformdirs"}
VERIFIER_ONLY = {"pyhanko-certvalidator", "uritools", "oscrypto"}


def _would_install(extra: str) -> set[str]:
    """What pip resolves for ``.[extra]`` into an empty environment (nothing is installed)."""
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--disable-pip-version-check"]
    result = subprocess.run(
        [*pip, "--quiet", "--report", "-", f"{ROOT}[{extra}]"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"pip could not resolve .[{extra}]: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    return {item["metadata"]["name"].lower() for item in report["install"]}


def test_a_desktop_install_pulls_no_verifier_dependency() -> None:
    names = _would_install("desktop")
    assert {"python-pkcs11", "pyscard", "cryptography", "aiohttp"} <= names
    assert not names & VERIFIER_ONLY, names & VERIFIER_ONLY


def test_a_verifier_install_pulls_no_pkcs11_or_pcsc() -> None:
    names = _would_install("verifier")
    assert {"pyhanko-certvalidator", "cryptography", "aiohttp"} <= names
    assert not names & DESKTOP_ONLY, names & DESKTOP_ONLY


def _modules_loaded_by(*modules: str) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(result.stdout.split())


def test_the_verifier_side_imports_nothing_of_the_desktop_side() -> None:
    loaded = _modules_loaded_by("cert_agent.verifier.app", "cert_agent.verifier.cli", "cert_agent.verifier.validation")
    assert not {m for m in loaded if m.split(".")[0] in ("pkcs11", "smartcard", "platformdirs")}
    assert not {m for m in loaded if m.startswith(("cert_agent.agent", "cert_agent.drivers"))}


def test_the_desktop_side_imports_nothing_of_the_verifier_side() -> None:
    loaded = _modules_loaded_by("cert_agent.agent.cli", "cert_agent.agent.server", "cert_agent.agent.workers.child")
    assert not {m for m in loaded if m.split(".")[0] == "pyhanko_certvalidator"}
    assert not {m for m in loaded if m.startswith("cert_agent.verifier")}


def test_the_shared_part_needs_neither_side() -> None:
    loaded = _modules_loaded_by("cert_agent.common.webeid", "cert_agent.common.errors", "cert_agent.common.taxpayer_id")
    assert not {m for m in loaded if m.split(".")[0] in ("pkcs11", "smartcard", "pyhanko_certvalidator")}
    assert not {m for m in loaded if m.startswith(("cert_agent.agent", "cert_agent.drivers", "cert_agent.verifier"))}


@pytest.mark.parametrize(
    ("command", "hidden", "extra"),
    [("cert_agent.agent.cli", "pkcs11", "desktop"), ("cert_agent.verifier.cli", "pyhanko_certvalidator", "verifier")],
)
def test_a_command_without_its_extra_says_what_to_install(command: str, hidden: str, extra: str) -> None:
    # Building a second environment without the extra would need a network install in the
    # test; instead the lookup of that one module finds nothing, as it would in such an install.
    code = (
        "import importlib.util, sys\n"
        f"real = importlib.util.find_spec\n"
        f"importlib.util.find_spec = lambda name, *a: None if name == {hidden!r} else real(name, *a)\n"
        f"from {command} import run\nrun()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert f"pip install 'cert-agent[{extra}]'" in result.stderr and "Traceback" not in result.stderr
