"""Render every platform's install artifacts from the one source (``cert_agent.desktop.autostart``
and ``cert_agent.desktop.browser_policy``) into a folder, for the packages to pick up.

    python -m installer.render --origin https://etax.example.com --out dist/installer

Writes ``linux/`` (systemd user unit, XDG autostart entry, Chromium/Chrome/Edge policy JSON),
``macos/`` (LaunchAgent plist, Chrome/Edge/Chromium/Firefox policy plists) and ``windows/`` (Run
key and browser policies as .reg files). Only the Linux artifacts have run on a real system here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cert_agent.desktop import autostart, browser_policy
from cert_agent.desktop.browser_policy import chromium

LINUX_COMMAND = ["/opt/cert-agent/bin/cert-agent", "serve"]
MACOS_COMMAND = ["/Applications/cert-agent.app/Contents/MacOS/cert-agent", "serve"]
WINDOWS_COMMAND = [r"C:\Program Files\cert-agent\cert-agent.exe", "serve"]


def render(origins: list[str], out: Path) -> list[Path]:
    files: dict[Path, str | bytes] = {
        out / "linux" / "cert-agent.service": autostart.systemd_user_unit(LINUX_COMMAND),
        out / "linux" / "cert-agent.desktop": autostart.xdg_autostart_entry(LINUX_COMMAND),
        out / "linux" / chromium.FILE_NAME: chromium.linux_policy_file(origins),
        out / "macos" / f"{autostart.LAUNCH_AGENT_LABEL}.plist": autostart.launch_agent_plist(MACOS_COMMAND),
        out / "windows" / "autostart.reg": autostart.windows_run_reg(WINDOWS_COMMAND),
        out / "windows" / "browser-policy.reg": browser_policy.windows_policy_reg(origins),
    }
    for domain, plist in browser_policy.macos_policy_plists(origins).items():
        files[out / "macos" / f"{domain}.plist"] = plist
    files[out / "macos" / "postinstall"] = macos_postinstall()
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return sorted(files)


def macos_postinstall() -> str:
    """The pkg's postinstall script: the LaunchAgent for every user, the browsers' policy, and
    the agent started for the user at the console. Generated and syntax-checked; not run here."""
    label = autostart.LAUNCH_AGENT_LABEL
    lines = [
        "#!/bin/sh",
        "set -e",
        f'install -m 644 "$(dirname "$0")/{label}.plist" /Library/LaunchAgents/{label}.plist',
        'mkdir -p "/Library/Managed Preferences"',
    ]
    for domain in browser_policy.MACOS_DOMAINS:
        lines.append(f'install -m 644 "$(dirname "$0")/{domain}.plist" "/Library/Managed Preferences/{domain}.plist"')
    lines += [
        "console_user=$(stat -f %Su /dev/console)",
        'if [ -n "$console_user" ] && [ "$console_user" != root ]; then',
        f'  launchctl bootstrap "gui/$(id -u "$console_user")" /Library/LaunchAgents/{label}.plist || true',
        "fi",
        "",
    ]
    return "\n".join(lines)


PACKAGE = "cert-agent"
PREFIX = "/opt/cert-agent"
RMDIR = "rmdir --ignore-fail-on-non-empty"


def stage_deb(origins: list[str], stage: Path, version: str, arch: str, python: str) -> None:
    """Everything of the Debian package but the virtual environment (build-deb.sh makes that).
    ``python`` is the system Python's X.Y the environment was built with: the package needs it."""
    major, minor = python.split(".")[:2]
    python_next = f"{major}.{int(minor) + 1}"
    command = [f"{PREFIX}/bin/cert-agent", "serve"]
    policy_origins = browser_policy.allowed_origins(origins)
    toml_list = ", ".join(f'"{origin}"' for origin in policy_origins)
    files: dict[str, str] = {
        "usr/lib/systemd/user/cert-agent.service": autostart.systemd_user_unit(command),
        "etc/xdg/autostart/cert-agent.desktop": autostart.xdg_autostart_entry(command, systemd_skip=True),
        "etc/cert-agent/config.toml": (
            "# The tax bureau sites that may use the agent (exact origins). A user's own\n"
            "# ~/.config/cert-agent/config.toml replaces this file for that user.\n"
            f"allowed_origins = [{toml_list}]\n"
        ),
        "DEBIAN/control": "\n".join(
            [
                f"Package: {PACKAGE}",
                f"Version: {version}",
                f"Architecture: {arch}",
                "Maintainer: cert-agent developers <cert-agent@invalid>",
                f"Depends: python3 (>= {python}), python3 (<< {python_next}), pcscd, libpcsclite1",
                "Recommends: opensc-pkcs11",
                "Section: utils",
                "Priority: optional",
                "Description: 证书助手 cert-agent: certificate login to the electronic tax bureau",
                " A local agent that lets the tax bureau's web pages log in with the certificate on a",
                " tax UKey, Golden Tax disk or tax-control disk (PKCS#11), over a loopback WebSocket.",
                "",
            ]
        ),
        "DEBIAN/conffiles": "/etc/cert-agent/config.toml\n/etc/xdg/autostart/cert-agent.desktop\n",
        "DEBIAN/postinst": "\n".join(
            [
                "#!/bin/sh",
                "set -e",
                'if [ "$1" = configure ]; then',
                f"  {PREFIX}/bin/python -m compileall -q {PREFIX}/lib >/dev/null || true",
                f"  {PREFIX}/bin/cert-agent browser-policy install --config /etc/cert-agent/config.toml >/dev/null",
                "  if command -v systemctl >/dev/null; then systemctl --global enable cert-agent.service || true; fi",
                "fi",
                "",
            ]
        ),
        "DEBIAN/prerm": "\n".join(
            [
                "#!/bin/sh",
                "set -e",
                "if command -v systemctl >/dev/null; then systemctl --global disable cert-agent.service || true; fi",
                f"{PREFIX}/bin/cert-agent browser-policy remove >/dev/null || true",
                "# policy folders that install made and that no package owns go with it",
                *[
                    f"if [ -d /{d} ] && ! dpkg -S /{d} >/dev/null 2>&1; then {RMDIR} /{d}; fi"
                    for d in browser_policy.linux_folders()
                ],
                f"find {PREFIX} -name __pycache__ -type d -prune -exec rm -rf {{}} + || true",
                "",
            ]
        ),
        "DEBIAN/postrm": "\n".join(
            [
                "#!/bin/sh",
                "set -e",
                'if [ "$1" = purge ]; then',
                "  rm -rf /etc/cert-agent",
                "fi",
                f"rmdir --ignore-fail-on-non-empty {PREFIX} 2>/dev/null || true",
                "",
            ]
        ),
    }
    for name, content in files.items():
        path = stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        if name.startswith("DEBIAN/post") or name.startswith("DEBIAN/pre"):
            path.chmod(0o755)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origin", action="append", required=True, help="a tax bureau origin (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("dist/installer"))
    parser.add_argument("--deb-stage", type=Path, help="stage the Debian package's files here instead")
    parser.add_argument("--version", default="0.0.0")
    parser.add_argument("--arch", default="all")
    parser.add_argument("--python", default="3.11", help="X.Y of the Python the environment was built with")
    args = parser.parse_args()
    if args.deb_stage:
        stage_deb(args.origin, args.deb_stage, args.version, args.arch, args.python)
        return
    for path in render(args.origin, args.out):
        print(path)


if __name__ == "__main__":
    main()
