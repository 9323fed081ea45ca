"""The Debian package for real: built from the repository, installed with dpkg on this machine,
started exactly as its systemd user unit says, used by a page, then purged without a trace."""

from __future__ import annotations

import asyncio
import configparser
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cert_agent.desktop import browser_policy
from cert_agent.desktop.browser_policy import chromium, firefox
from softhsm_fixtures import Fixtures
from tests.harness.daemon import Daemon
from tests.paths import ROOT

ORIGIN = "https://etax.example.com"
UNIT = Path("/usr/lib/systemd/user/cert-agent.service")
OURS = [
    Path("/opt/cert-agent"),
    Path("/etc/cert-agent"),
    UNIT,
    Path("/etc/xdg/autostart/cert-agent.desktop"),
    Path("/etc/systemd/user/default.target.wants/cert-agent.service"),
    Path("/usr/share/doc/cert-agent"),
    *(Path("/") / d / chromium.FILE_NAME for d in chromium.LINUX_DIRS.values()),
    Path("/") / firefox.LINUX_FILE,
]


def _installed() -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "cert-agent"], capture_output=True, text=True)
    return "install ok installed" in result.stdout


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("dpkg-deb") is None:
        pytest.skip("installing a .deb needs root and dpkg (Debian)")
    if _installed():
        pytest.skip("cert-agent is installed on this machine already; not touching it")
    built = subprocess.run(
        ["bash", "installer/linux/build-deb.sh", "--origin", ORIGIN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    deb = ROOT / built.stdout.strip().splitlines()[-1]
    installed = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, check=False)
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # Installing it again takes the upgrade path (prerm upgrade, then postinst configure).
        upgraded = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, check=False)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        yield deb
        removed = subprocess.run(["dpkg", "-r", "cert-agent"], capture_output=True, text=True, check=False)
        assert removed.returncode == 0, removed.stderr
        assert not Path("/opt/cert-agent").exists()
        assert Path("/etc/cert-agent/config.toml").exists()  # a plain remove keeps the configuration
        assert browser_policy.status([ORIGIN]) == {"chromium": False, "chrome": False, "edge": False, "firefox": False}
    finally:
        purged = subprocess.run(["dpkg", "--purge", "cert-agent"], capture_output=True, text=True, check=False)
        assert purged.returncode == 0, purged.stderr
        left = [str(path) for path in OURS if path.exists()]
        assert not left, f"left behind after dpkg --purge: {left}"


def test_the_package_installs_the_agent_its_unit_autostart_config_and_browser_policy(installed_package: Path) -> None:
    files = subprocess.run(["dpkg", "-L", "cert-agent"], capture_output=True, text=True, check=True).stdout.split()
    for path in [
        "/opt/cert-agent/bin/cert-agent",
        str(UNIT),
        "/etc/xdg/autostart/cert-agent.desktop",
        "/etc/cert-agent/config.toml",
    ]:
        assert path in files, path
    assert not [path for path in files if "cert-verifier" in path or "/verifier/" in path]  # the agent only
    assert f'allowed_origins = ["{ORIGIN}"]' in Path("/etc/cert-agent/config.toml").read_text(encoding="utf-8")
    assert Path("/etc/systemd/user/default.target.wants/cert-agent.service").is_symlink()  # enabled for every user
    assert browser_policy.status([ORIGIN]) == {"chromium": True, "chrome": True, "edge": True, "firefox": True}
    assert "X-systemd-skip=true" in Path("/etc/xdg/autostart/cert-agent.desktop").read_text(encoding="utf-8")
    # `systemd-analyze verify --user` needs a user manager, which CI's container has not: the unit is
    # verified as a system unit file instead (the same syntax and directive checks), when present.
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
        assert not [line for line in verify.stderr.splitlines() if "cert-agent.service" in line], verify.stderr


def test_the_installed_agent_starts_as_its_unit_says_and_serves_a_configured_page(
    installed_package: Path, fixtures: Fixtures, tmp_path: Path
) -> None:
    unit = configparser.ConfigParser(interpolation=None)
    unit.read(UNIT, encoding="utf-8")
    command = shlex.split(unit["Service"]["ExecStart"])
    assert command == ["/opt/cert-agent/bin/cert-agent", "serve"]
    env = fixtures.env.environ()  # SoftHSM2 media stand in for the taxpayer's UKey
    env.update(HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    env.pop("XDG_CONFIG_HOME", None)
    started = time.monotonic()
    agent = Daemon(command, tmp_path / "agent.log", env=env)
    try:
        assert "listening on ws://127.0.0.1:27138/ws" in agent.line()
        ready = time.monotonic() - started

        async def page() -> dict[str, object]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect("ws://127.0.0.1:27138/ws", origin=ORIGIN) as ws,
            ):
                await ws.send_json({"id": 1, "method": "listCertificates"})
                reply: dict[str, object] = await ws.receive_json(timeout=30)
                return reply

        reply = asyncio.run(page())
        assert isinstance(reply.get("result"), dict) and reply["result"]["tokens"]  # type: ignore[index]
    finally:
        log = agent.stop()
    assert agent.returncode == 0, log
    assert ready < 5  # the benchmark measures the cold start; this only catches a hang
