"""Starting the agent when the taxpayer logs in: the per-user autostart artifact of each OS, and
``cert-agent autostart enable|disable|status``.

One source for what gets installed: the functions that render an artifact are the ones the
command writes with and the ones ``installer/render.py`` packages.

- Linux: an XDG autostart entry (``~/.config/autostart/cert-agent.desktop``). Desktops without
  systemd start it themselves; with systemd (246 and later) the xdg-autostart generator turns
  it into a user service. The Debian package installs a systemd user unit instead (see
  ``systemd_user_unit``), which also restarts the agent if it exits.
- macOS: a LaunchAgent (``~/Library/LaunchAgents/cn.cert-agent.agent.plist``): started at login,
  started again if it exits with an error; the agent never daemonizes itself.
- Windows: the ``cert-agent`` value under ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

Two autostarts can never run two agents: a second one exits at once (one agent per user).
Only the Linux path is exercised here; the macOS and Windows artifacts are generated and their
content is tested, but they have not run on those systems.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cert_agent.desktop.fileformats import desktop_exec, reg_string

NAME = "cert-agent"
LAUNCH_AGENT_LABEL = "cn.cert-agent.agent"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
DESCRIPTION = "证书助手 cert-agent: certificate login to the electronic tax bureau"


def agent_command() -> list[str]:
    """How this installation starts the agent: this Python, this package."""
    return [sys.executable, "-m", "cert_agent", "serve"]


# --- the artifacts --------------------------------------------------------------------------------


def xdg_autostart_entry(command: list[str], *, systemd_skip: bool = False) -> str:
    """``systemd_skip``: for the package, whose systemd user unit starts the agent where there
    is a systemd user session; the entry then serves only desktops without one."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=证书助手 (cert-agent)",
            f"Comment={DESCRIPTION}",
            f"Exec={desktop_exec(command)}",
            "Terminal=false",
            "NoDisplay=true",
            "X-GNOME-Autostart-enabled=true",
            *(["X-systemd-skip=true"] if systemd_skip else []),
            "",
        ]
    )


def systemd_user_unit(command: list[str]) -> str:
    """The user service the Debian package installs (``/usr/lib/systemd/user``)."""
    return "\n".join(
        [
            "[Unit]",
            f"Description={DESCRIPTION}",
            "Documentation=file:///usr/share/doc/cert-agent/README.md",
            "After=graphical-session.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={shlex.join(command)}",
            "Restart=on-failure",
            "RestartSec=2",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def launch_agent_plist(command: list[str]) -> bytes:
    return plistlib.dumps(
        {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": command,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},  # started again after a crash, not after a clean stop
            "ProcessType": "Interactive",
        }
    )


def windows_run_command(command: list[str]) -> str:
    """The command line stored in the Run key (Windows quoting)."""
    return subprocess.list2cmdline(command)


def windows_run_reg(command: list[str]) -> str:
    """The same value as a .reg file, for administrators who deploy it."""
    value = reg_string(windows_run_command(command))
    key = f"[HKEY_CURRENT_USER\\{WINDOWS_RUN_KEY}]"
    return f"Windows Registry Editor Version 5.00\r\n\r\n{key}\r\n{reg_string(NAME)}={value}\r\n"


# --- enable, disable, status for the current user ---------------------------------------------


@dataclass(frozen=True)
class AutostartState:
    enabled: bool
    where: str  # the file (or registry value) that starts the agent


def artifact_path(home: Path, platform: str = sys.platform) -> Path:
    if platform == "darwin":
        return home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    config_home = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else home / ".config"
    return base / "autostart" / f"{NAME}.desktop"


def enable(home: Path, command: list[str], platform: str = sys.platform) -> AutostartState:
    if platform == "win32":  # untested here: no Windows machine in CI
        import winreg

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:  # type: ignore[attr-defined,unused-ignore]
            winreg.SetValueEx(key, NAME, 0, winreg.REG_SZ, windows_run_command(command))  # type: ignore[attr-defined,unused-ignore]
        return status(home, platform)
    path = artifact_path(home, platform)
    path.parent.mkdir(parents=True, exist_ok=True)
    if platform == "darwin":
        path.write_bytes(launch_agent_plist(command))
    else:
        path.write_text(xdg_autostart_entry(command), encoding="utf-8")
    return status(home, platform)


def disable(home: Path, platform: str = sys.platform) -> AutostartState:
    if platform == "win32":  # untested here
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:  # type: ignore[attr-defined,unused-ignore]
                winreg.DeleteValue(key, NAME)  # type: ignore[attr-defined,unused-ignore]
        except FileNotFoundError:
            pass
        return status(home, platform)
    artifact_path(home, platform).unlink(missing_ok=True)
    return status(home, platform)


def status(home: Path, platform: str = sys.platform) -> AutostartState:
    if platform == "win32":  # untested here
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:  # type: ignore[attr-defined,unused-ignore]
                winreg.QueryValueEx(key, NAME)  # type: ignore[attr-defined,unused-ignore]
            return AutostartState(True, f"HKCU\\{WINDOWS_RUN_KEY}\\{NAME}")
        except FileNotFoundError:
            return AutostartState(False, f"HKCU\\{WINDOWS_RUN_KEY}\\{NAME}")
    path = artifact_path(home, platform)
    if not path.exists():
        return AutostartState(False, str(path))
    if platform != "darwin":  # a desktop's settings switch an entry off without removing it
        lines = {line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()}
        if {"Hidden=true", "X-GNOME-Autostart-enabled=false"} & lines:
            return AutostartState(False, str(path))
    return AutostartState(True, str(path))
