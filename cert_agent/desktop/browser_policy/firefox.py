"""Firefox's enterprise policy ``LocalNetworkAccess``: its ``SkipDomains`` names the host of each
configured origin, so that the tax bureau's pages reach the loopback agent without Firefox's Local
Network Access prompt (which, while pending, holds the connection: the page would wait).

Measured in Debian's firefox-esr 153 with Local Network Access switched on: ``SkipDomains`` takes
host names (the page's host in it skips the check; an origin with its scheme does not match), and
a policy that sets only ``SkipDomains`` leaves the switches (``Enabled``, prompting) as they were.
A host is wider than an origin (every scheme and port of it); the agent's own origin check still
refuses any origin it was not told to allow.

Firefox reads one file for all its policies; on Linux ``/etc/firefox/policies/policies.json``.
``install`` merges our key into it, keeping every other policy and any ``LocalNetworkAccess``
settings an administrator made, and records beside it what was there, so ``remove`` puts back
exactly that. A policies.json that is not JSON is refused, never overwritten.
Windows: ``HKLM\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains\\1..n``;
macOS: the preference domain ``org.mozilla.firefox`` (generated and content-tested only).
"""

from __future__ import annotations

import json
import plistlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cert_agent.agent.origins import normalize_origin
from cert_agent.desktop.browser_policy.folders import created_folders, missing_folders, remove_if_empty
from cert_agent.desktop.fileformats import reg_string

BROWSER = "firefox"
POLICY = "LocalNetworkAccess"
LINUX_FILE = Path("etc/firefox/policies/policies.json")
RECORD = ".cert-agent-created"  # beside policies.json: what install found, which remove restores
MACOS_DOMAIN = "org.mozilla.firefox"
WINDOWS_KEY = r"SOFTWARE\Policies\Mozilla\Firefox"


class PolicyFileError(ValueError):
    """The existing policies.json cannot be read as Firefox's policy file; it is left untouched."""


def skip_domains(origins: Iterable[str]) -> list[str]:
    """The host names of these origins, sorted (each origin validated: no wildcard passes)."""
    return sorted({urlsplit(normalize_origin(origin)).hostname or "" for origin in origins} - {""})


def macos_policy_plist(origins: Iterable[str]) -> bytes:
    return plistlib.dumps({"EnterprisePoliciesEnabled": True, POLICY: {"SkipDomains": skip_domains(origins)}})


def windows_policy_reg_lines(origins: Iterable[str]) -> list[str]:
    lines = [f"[HKEY_LOCAL_MACHINE\\{WINDOWS_KEY}\\{POLICY}\\SkipDomains]"]
    lines.extend(f"{reg_string(str(i))}={reg_string(host)}" for i, host in enumerate(skip_domains(origins), start=1))
    return [*lines, ""]


def install(origins: Iterable[str], root: Path = Path("/")) -> list[Path]:
    """Merge our ``SkipDomains`` into Firefox's policies.json under ``root``; the file written."""
    hosts = skip_domains(origins)
    path = root / LINUX_FILE
    record_path = path.parent / RECORD
    made = [str(folder.relative_to(root)) for folder in missing_folders(path.parent, root)]
    document = _read(path)
    policies = document.setdefault("policies", {})
    if record_path.exists():  # a second install keeps the first one's record of what was there
        record = json.loads(record_path.read_text(encoding="utf-8"))
    else:
        record = {"folders": made, "fileExisted": path.exists()}
        if POLICY in policies:
            record["previous"] = policies[POLICY]
    previous = record.get("previous")
    settings = dict(previous) if isinstance(previous, dict) else {}
    theirs = settings.get("SkipDomains")
    settings["SkipDomains"] = sorted(set(hosts) | set(theirs if isinstance(theirs, list) else []))
    policies[POLICY] = settings
    path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    path.chmod(0o644)
    return [path]


def remove(root: Path = Path("/")) -> list[Path]:
    """Put Firefox's policies.json back as install found it (no file, or the file with its own
    ``LocalNetworkAccess`` or none), and take away the folders install made if empty again."""
    path = root / LINUX_FILE
    record_path = path.parent / RECORD
    if not record_path.exists():
        return []  # nothing of ours: an administrator's own policies.json is not touched
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {"folders": [], "fileExisted": True}  # keep the file; take our key out only
    if path.exists():
        document = _read(path)
        policies = document.setdefault("policies", {})
        if "previous" in record:
            policies[POLICY] = record["previous"]
        else:
            policies.pop(POLICY, None)
        if not record.get("fileExisted") and document == {"policies": {}}:
            path.unlink()
        else:
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    record_path.unlink()
    remove_if_empty(created_folders(record.get("folders"), root))
    return [path]


def status(origins: Iterable[str], root: Path = Path("/")) -> dict[str, bool]:
    """Does Firefox's policy skip the Local Network Access check for every configured host?"""
    wanted = set(skip_domains(origins))
    try:
        settings = _read(root / LINUX_FILE).get("policies", {}).get(POLICY, {})
    except PolicyFileError:
        return {BROWSER: False}
    listed = settings.get("SkipDomains", []) if isinstance(settings, dict) else []
    return {BROWSER: bool(wanted) and wanted <= {v for v in listed if isinstance(v, str)}}


def _read(path: Path) -> dict[str, Any]:
    """Firefox's policy document at ``path`` (``{}`` when there is none)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyFileError(f"{path} 不是有效的 JSON，未改动 (not valid JSON, left as it is): {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("policies", {}), dict):
        raise PolicyFileError(f"{path} 不是 Firefox 策略文件，未改动 (not a Firefox policy file, left as it is)")
    return document
