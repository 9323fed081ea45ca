"""Chromium-based browsers' managed policy that lets the configured tax bureau origins reach the
loopback agent without a Local Network Access prompt.

Chrome 142 and later ask the user before a public https page may open ``ws://127.0.0.1``;
Chromium-based browsers skip the prompt for origins listed in the managed policies
``LocalNetworkAccessAllowedForUrls`` and ``LoopbackNetworkAllowedForUrls`` (Chrome 145 split the
permission; both names are written so older and newer browsers read one). The list is exactly
the agent's configured origins: never a wildcard (``origins.normalize_origin`` refuses one).

Where each browser reads managed policy:
- Linux: a JSON file in ``/etc/chromium/policies/managed/`` (Chromium),
  ``/etc/opt/chrome/policies/managed/`` (Google Chrome), ``/etc/opt/edge/policies/managed/``
  (Microsoft Edge); written by root.
- macOS: the preference domains ``org.chromium.Chromium``, ``com.google.Chrome``,
  ``com.microsoft.Edge`` (a configuration profile or ``/Library/Managed Preferences``).
- Windows: ``HKLM\\Software\\Policies\\<vendor>\\<browser>\\<policy>\\1..n``.
Only the Linux files are written by the command and tested here; the macOS and Windows forms
are generated from the same lists and their content is tested.
"""

from __future__ import annotations

import json
import plistlib
from collections.abc import Iterable
from pathlib import Path

from cert_agent.agent.origins import normalize_origin
from cert_agent.desktop.browser_policy.folders import created_folders, missing_folders, remove_if_empty
from cert_agent.desktop.fileformats import reg_string

POLICIES = ("LocalNetworkAccessAllowedForUrls", "LoopbackNetworkAllowedForUrls")
FILE_NAME = "cert-agent.json"
CREATED = ".cert-agent-created"  # beside the file: the folders install made, which remove takes away
LINUX_DIRS = {
    "chromium": Path("etc/chromium/policies/managed"),
    "chrome": Path("etc/opt/chrome/policies/managed"),
    "edge": Path("etc/opt/edge/policies/managed"),
}
MACOS_DOMAINS = {"chromium": "org.chromium.Chromium", "chrome": "com.google.Chrome", "edge": "com.microsoft.Edge"}
WINDOWS_KEYS = {
    "chromium": r"SOFTWARE\Policies\Chromium",
    "chrome": r"SOFTWARE\Policies\Google\Chrome",
    "edge": r"SOFTWARE\Policies\Microsoft\Edge",
}


def policy(origins: Iterable[str]) -> dict[str, list[str]]:
    """The policy values for these origins, normalized and sorted (no wildcard can pass)."""
    allowed = sorted({normalize_origin(origin) for origin in origins})
    return {name: list(allowed) for name in POLICIES}


def linux_policy_file(origins: Iterable[str]) -> str:
    return json.dumps(policy(origins), indent=2) + "\n"


def macos_policy_plist(origins: Iterable[str]) -> bytes:
    return plistlib.dumps(policy(origins))


def windows_policy_reg_lines(origins: Iterable[str]) -> list[str]:
    lines = []
    values = policy(origins)
    for key in WINDOWS_KEYS.values():
        for name, urls in values.items():
            lines.append(f"[HKEY_LOCAL_MACHINE\\{key}\\{name}]")
            lines.extend(f"{reg_string(str(index))}={reg_string(url)}" for index, url in enumerate(urls, start=1))
            lines.append("")
    return lines


def install(origins: Iterable[str], root: Path = Path("/")) -> list[Path]:
    """Write the Linux policy file for each browser under ``root``; the files written."""
    text = linux_policy_file(origins)
    written = []
    for directory in LINUX_DIRS.values():
        path = root / directory / FILE_NAME
        made = [str(folder.relative_to(root)) for folder in missing_folders(path.parent, root)]
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = path.parent / CREATED
        if made or not marker.exists():  # a second install keeps the first one's record
            marker.write_text(json.dumps(made) + "\n", encoding="utf-8")
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    return written


def remove(root: Path = Path("/")) -> list[Path]:
    """Remove our policy file for each browser, and the folders install made for it when they
    are empty again: what was there before install is left as it was (other files are not ours)."""
    removed = []
    for directory in LINUX_DIRS.values():
        path = root / directory / FILE_NAME
        marker = path.parent / CREATED
        if not path.exists() and not marker.exists():
            continue
        made = _created_folders(marker, root)
        for ours in (path, marker):
            if ours.exists():
                ours.unlink()
        removed.append(path)
        remove_if_empty(made)
    return removed


def _created_folders(marker: Path, root: Path) -> list[Path]:
    """The folders the marker lists (an install without one, from before it was kept: managed/
    and policies/, as remove used to take)."""
    try:
        listed = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [marker.parent, marker.parent.parent]
    return created_folders(listed, root)


def status(origins: Iterable[str], root: Path = Path("/")) -> dict[str, bool]:
    """For each browser: does its managed policy allow every configured origin?"""
    wanted = set(policy(origins)[POLICIES[0]])
    result = {}
    for browser, directory in LINUX_DIRS.items():
        allowed: set[str] = set()
        folder = root / directory
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for name in POLICIES:
                values = data.get(name, []) if isinstance(data, dict) else []
                allowed.update(v for v in values if isinstance(v, str))
        result[browser] = bool(wanted) and wanted <= allowed
    return result
