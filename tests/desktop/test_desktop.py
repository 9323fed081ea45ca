"""On the taxpayer's desktop: autostart that a user can switch off, the browsers' managed policy
for the configured origins, and the install artifacts of each OS from one source."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cert_agent.desktop import autostart
from cert_agent.desktop.browser_policy import chromium, firefox
from installer.render import render

ORIGIN = "https://etax.example.com"


def cert_agent_as(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "cert_agent", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_autostart_enable_status_disable_on_linux_with_a_users_home(tmp_path: Path) -> None:
    entry = tmp_path / ".config" / "autostart" / "cert-agent.desktop"
    assert "未开启 disabled" in cert_agent_as(tmp_path, "autostart", "status").stdout
    enabled = cert_agent_as(tmp_path, "autostart", "enable")
    assert enabled.returncode == 0 and "已开启 enabled" in enabled.stdout and entry.exists()
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(entry, encoding="utf-8")
    command = shlex.split(desktop["Desktop Entry"]["Exec"])
    assert command == [sys.executable, "-m", "cert_agent", "serve"] and Path(command[0]).exists()
    assert "已开启 enabled" in cert_agent_as(tmp_path, "autostart", "status").stdout
    disabled = cert_agent_as(tmp_path, "autostart", "disable")
    assert "未开启 disabled" in disabled.stdout and not entry.exists()


def test_an_entry_switched_off_in_the_desktops_settings_is_reported_off(tmp_path: Path) -> None:
    state = autostart.enable(tmp_path, ["cert-agent", "serve"], platform="linux")
    path = Path(state.where)
    path.write_text(path.read_text(encoding="utf-8").replace("enabled=true", "enabled=false"), encoding="utf-8")
    assert autostart.status(tmp_path, platform="linux").enabled is False


def test_the_systemd_user_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    executable = tmp_path / "cert-agent"
    executable.write_text("#!/bin/sh\n", encoding="utf-8")
    executable.chmod(0o755)
    unit = tmp_path / "cert-agent.service"
    unit.write_text(autostart.systemd_user_unit([str(executable), "serve"]), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [line for line in result.stderr.splitlines() if "cert-agent.service" in line]
    assert not problems, result.stderr


def test_macos_launch_agent_runs_at_login_and_restarts_after_a_crash() -> None:
    plist = plistlib.loads(autostart.launch_agent_plist(["/opt/cert-agent/bin/cert-agent", "serve"]))
    assert plist["Label"] == autostart.LAUNCH_AGENT_LABEL
    assert plist["ProgramArguments"] == ["/opt/cert-agent/bin/cert-agent", "serve"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}


def test_windows_run_key_quotes_a_path_with_spaces() -> None:
    reg = autostart.windows_run_reg([r"C:\Program Files\cert-agent\cert-agent.exe", "serve"])
    assert reg.startswith("Windows Registry Editor Version 5.00\r\n")
    assert r"[HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run]" in reg
    assert r'"cert-agent"="\"C:\\Program Files\\cert-agent\\cert-agent.exe\" serve"' in reg


def test_browser_policy_install_status_remove_under_a_root(tmp_path: Path) -> None:
    args = ["browser-policy", "--root", str(tmp_path), "--allow-origin", ORIGIN]
    assert "未允许" in cert_agent_as(tmp_path, *args, "status").stdout
    installed = cert_agent_as(tmp_path, *args, "install")
    assert installed.returncode == 0, installed.stderr
    for directory in chromium.LINUX_DIRS.values():
        data = json.loads((tmp_path / directory / "cert-agent.json").read_text(encoding="utf-8"))
        assert data == {"LocalNetworkAccessAllowedForUrls": [ORIGIN], "LoopbackNetworkAllowedForUrls": [ORIGIN]}
    policies = json.loads((tmp_path / firefox.LINUX_FILE).read_text(encoding="utf-8"))
    assert policies == {"policies": {"LocalNetworkAccess": {"SkipDomains": ["etax.example.com"]}}}  # the host
    assert installed.stdout.count("允许 allowed") == 4
    removed = cert_agent_as(tmp_path, *args, "remove")
    assert removed.stdout.count("已删除") == 4
    assert not list(tmp_path.rglob("cert-agent.json")) and not list(tmp_path.rglob("policies.json"))


@pytest.mark.parametrize(
    "origin", ["https://*.example.com", "*", "https://etax.example.com/login", "http://etax.example.com"]
)
def test_browser_policy_never_writes_a_wildcard_or_a_non_origin(tmp_path: Path, origin: str) -> None:
    result = cert_agent_as(tmp_path, "browser-policy", "--root", str(tmp_path), "--allow-origin", origin, "install")
    assert result.returncode == 2 and "配置错误" in result.stderr
    assert not list(tmp_path.rglob("cert-agent.json"))


def test_every_platforms_artifacts_render_from_one_source(tmp_path: Path) -> None:
    written = render([ORIGIN, "https://etax.example.com:443"], tmp_path)
    names = {path.relative_to(tmp_path).as_posix() for path in written}
    assert {"linux/cert-agent.service", "linux/cert-agent.desktop", "linux/cert-agent.json"} <= names
    for domain in chromium.MACOS_DOMAINS.values():
        policy = plistlib.loads((tmp_path / "macos" / f"{domain}.plist").read_bytes())
        assert policy == {"LocalNetworkAccessAllowedForUrls": [ORIGIN], "LoopbackNetworkAllowedForUrls": [ORIGIN]}
    policy = plistlib.loads((tmp_path / "macos" / f"{firefox.MACOS_DOMAIN}.plist").read_bytes())
    assert policy == {"EnterprisePoliciesEnabled": True, "LocalNetworkAccess": {"SkipDomains": ["etax.example.com"]}}
    reg = (tmp_path / "windows" / "browser-policy.reg").read_bytes().decode("utf-8")  # CRLF kept
    for key in chromium.WINDOWS_KEYS.values():
        assert f'[HKEY_LOCAL_MACHINE\\{key}\\LocalNetworkAccessAllowedForUrls]\r\n"1"="{ORIGIN}"' in reg
    firefox_key = f"HKEY_LOCAL_MACHINE\\{firefox.WINDOWS_KEY}\\LocalNetworkAccess\\SkipDomains"
    assert f'[{firefox_key}]\r\n"1"="etax.example.com"' in reg
    assert plistlib.loads((tmp_path / "macos" / f"{autostart.LAUNCH_AGENT_LABEL}.plist").read_bytes())["RunAtLoad"]
    script = tmp_path / "macos" / "postinstall"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0  # parses as a shell script
    assert f"/Library/LaunchAgents/{autostart.LAUNCH_AGENT_LABEL}.plist" in script.read_text(encoding="utf-8")


def test_doctor_reports_autostart_and_the_browser_policy(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'allowed_origins = ["{ORIGIN}"]\nmodules = []\n', encoding="utf-8")
    cert_agent_as(tmp_path, "autostart", "enable")
    doctor = cert_agent_as(tmp_path, "doctor", "--config", str(config))
    assert "开机自动启动：已开启" in doctor.stdout
    assert "浏览器策略" in doctor.stdout and ORIGIN in doctor.stdout


def test_browser_policy_remove_leaves_exactly_what_was_there_before_install(tmp_path: Path) -> None:
    root = tmp_path / "root"
    own = root / "etc/opt/chrome/policies/recommended/chrome-own.json"  # Chrome's, before us
    own.parent.mkdir(parents=True)
    own.write_text("{}", encoding="utf-8")
    (root / "etc/chromium").mkdir(parents=True)  # an empty folder a package made
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    args = ["browser-policy", "--root", str(root), "--allow-origin", ORIGIN]
    assert cert_agent_as(tmp_path, *args, "install").returncode == 0
    assert cert_agent_as(tmp_path, *args, "install").returncode == 0  # twice: the first install's record holds
    assert cert_agent_as(tmp_path, *args, "remove").returncode == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


def test_firefox_policy_is_merged_into_an_administrators_policies_json_and_put_back_on_remove(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = root / firefox.LINUX_FILE
    path.parent.mkdir(parents=True)
    lna = {"Enabled": True, "SkipDomains": ["nas.lan"]}  # an administrator's own settings
    theirs = {"policies": {"DisableTelemetry": True, "LocalNetworkAccess": lna}}
    path.write_text(json.dumps(theirs), encoding="utf-8")
    args = ["browser-policy", "--root", str(root), "--allow-origin", ORIGIN]
    assert cert_agent_as(tmp_path, *args, "install").returncode == 0
    merged = json.loads(path.read_text(encoding="utf-8"))["policies"]
    assert merged["DisableTelemetry"] is True  # every other policy kept
    assert merged["LocalNetworkAccess"] == {"Enabled": True, "SkipDomains": ["etax.example.com", "nas.lan"]}
    assert cert_agent_as(tmp_path, *args, "remove").returncode == 0
    assert json.loads(path.read_text(encoding="utf-8")) == theirs
    assert sorted(p.name for p in path.parent.iterdir()) == ["policies.json"]  # our record went with it


def test_a_firefox_policies_json_that_is_not_json_is_refused_and_left_untouched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = root / firefox.LINUX_FILE
    path.parent.mkdir(parents=True)
    path.write_text("{ not json", encoding="utf-8")
    result = cert_agent_as(tmp_path, "browser-policy", "--root", str(root), "--allow-origin", ORIGIN, "install")
    assert result.returncode == 1 and "policies.json" in result.stderr and "Traceback" not in result.stderr
    assert path.read_text(encoding="utf-8") == "{ not json"
