"""Render every platform's install artifacts from the one source (``cert_agent.agent.autostart``
and ``cert_agent.agent.browser_policy``) into a folder, for the packages to pick up.

    python -m installer.render --origin https://etax.example.com --out dist/installer

Writes ``linux/`` (systemd user unit, XDG autostart entry, Chromium/Chrome/Edge policy JSON),
``macos/`` (LaunchAgent plist, Chrome/Edge/Chromium policy plists) and ``windows/`` (Run key
and browser policies as .reg files). Only the Linux artifacts have run on a real system here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cert_agent.agent import autostart, browser_policy

LINUX_COMMAND = ["/opt/cert-agent/bin/cert-agent", "serve"]
MACOS_COMMAND = ["/Applications/cert-agent.app/Contents/MacOS/cert-agent", "serve"]
WINDOWS_COMMAND = [r"C:\Program Files\cert-agent\cert-agent.exe", "serve"]


def render(origins: list[str], out: Path) -> list[Path]:
    files: dict[Path, str | bytes] = {
        out / "linux" / "cert-agent.service": autostart.systemd_user_unit(LINUX_COMMAND),
        out / "linux" / "cert-agent.desktop": autostart.xdg_autostart_entry(LINUX_COMMAND),
        out / "linux" / browser_policy.FILE_NAME: browser_policy.linux_policy_file(origins),
        out / "macos" / f"{autostart.LAUNCH_AGENT_LABEL}.plist": autostart.launch_agent_plist(MACOS_COMMAND),
        out / "windows" / "autostart.reg": autostart.windows_run_reg(WINDOWS_COMMAND),
        out / "windows" / "browser-policy.reg": browser_policy.windows_policy_reg(origins),
    }
    for domain in browser_policy.MACOS_DOMAINS.values():
        files[out / "macos" / f"{domain}.plist"] = browser_policy.macos_policy_plist(origins)
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return sorted(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origin", action="append", required=True, help="a tax bureau origin (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("dist/installer"))
    args = parser.parse_args()
    for path in render(args.origin, args.out):
        print(path)


if __name__ == "__main__":
    main()
