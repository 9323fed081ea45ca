"""The browsers' policy that lets the configured tax bureau origins reach the loopback agent
without a Local Network Access prompt (``cert-agent browser-policy``, the package's postinst).

Two families of browsers keep it in two shapes, one module each:
- ``chromium``: Chromium, Google Chrome, Microsoft Edge (and the Chromium-based 360 and QQ
  browsers): the origins in ``LocalNetworkAccessAllowedForUrls`` / ``LoopbackNetworkAllowedForUrls``,
  a file of our own in each browser's managed-policy folder.
- ``firefox``: Firefox: the origins' hosts in ``LocalNetworkAccess`` → ``SkipDomains``, merged
  into the one policies.json Firefox reads.
Each offers ``install(origins, root)``, ``remove(root)`` and ``status(origins, root)``; this module
runs them all, so a command or the package never names a browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cert_agent.desktop.browser_policy import chromium, firefox
from cert_agent.desktop.browser_policy.firefox import PolicyFileError

__all__ = ["MACOS_DOMAINS", "PolicyFileError", "allowed_origins", "install", "linux_folders", "remove", "status"]

MACOS_DOMAINS = (*chromium.MACOS_DOMAINS.values(), firefox.MACOS_DOMAIN)


def allowed_origins(origins: Iterable[str]) -> list[str]:
    """The origins normalized and sorted; ValueError for anything but an exact origin."""
    return chromium.policy(origins)[chromium.POLICIES[0]]


def install(origins: Iterable[str], root: Path = Path("/")) -> list[Path]:
    """Write every browser's policy under ``root``; the files written."""
    origins = allowed_origins(origins)
    firefox_files = firefox.install(origins, root)  # first: it may refuse an unreadable policies.json
    return [*chromium.install(origins, root), *firefox_files]


def remove(root: Path = Path("/")) -> list[Path]:
    """Undo ``install`` for every browser: what was there before it is left as it was."""
    return [*chromium.remove(root), *firefox.remove(root)]


def status(origins: Iterable[str], root: Path = Path("/")) -> dict[str, bool]:
    """For each browser: does its policy let every configured origin reach the agent?"""
    origins = allowed_origins(origins)
    return {**chromium.status(origins, root), **firefox.status(origins, root)}


def linux_folders() -> list[Path]:
    """Every folder ``install`` may make (relative to /), the deepest first: the package's prerm
    takes away those that are empty and that no package owns."""
    folders: list[Path] = []
    for leaf in [*chromium.LINUX_DIRS.values(), firefox.LINUX_FILE.parent]:
        while leaf != Path("etc") and leaf not in folders:
            folders.append(leaf)
            leaf = leaf.parent
    return sorted(folders, key=lambda f: len(f.parts), reverse=True)


def macos_policy_plists(origins: Iterable[str]) -> dict[str, bytes]:
    """Each browser's preference domain and its policy plist."""
    plists = {domain: chromium.macos_policy_plist(origins) for domain in chromium.MACOS_DOMAINS.values()}
    plists[firefox.MACOS_DOMAIN] = firefox.macos_policy_plist(origins)
    return plists


def windows_policy_reg(origins: Iterable[str]) -> str:
    """Every browser's policy as one .reg file (CRLF, as regedit writes them)."""
    lines = ["Windows Registry Editor Version 5.00", ""]
    lines += chromium.windows_policy_reg_lines(origins) + firefox.windows_policy_reg_lines(origins)
    return "\r\n".join(lines)
