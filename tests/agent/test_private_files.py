"""The agent's lock lives in a folder only its user controls (issue 17, item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cert_agent.agent.errors import PrivateDirUnsafe
from cert_agent.agent.instance import InstanceLock
from softhsm_fixtures import Fixtures
from tests.harness.agent import ALLOWED_ORIGIN, free_port
from tests.harness.otheruser import OTHER_GID, OTHER_UID, can_switch_user

EXIT_UNSAFE_DIR = 5
needs_root = pytest.mark.skipif(not can_switch_user(), reason="needs root on Linux to make files of another user")


@pytest.mark.parametrize("folder_owner", ["another user", "the user"])
def test_the_lock_never_follows_a_link_planted_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder_owner: str
) -> None:
    if folder_owner == "another user" and not can_switch_user():
        pytest.skip("needs root on Linux to make files of another user")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    planted = runtime / "cert-agent"
    planted.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file", encoding="utf-8")
    (planted / "agent.lock").symlink_to(victim)
    if folder_owner == "another user":
        os.chown(planted, OTHER_UID, OTHER_GID)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(PrivateDirUnsafe), InstanceLock("serve"):
        pass
    assert victim.read_text(encoding="utf-8") == "the user's own file"


def test_a_loose_mode_on_the_users_own_lock_folder_is_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (runtime / "cert-agent").mkdir(mode=0o777)
    os.chmod(runtime / "cert-agent", 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with InstanceLock("serve"):
        assert (runtime / "cert-agent").stat().st_mode & 0o777 == 0o700
        assert (runtime / "cert-agent" / "agent.lock").stat().st_mode & 0o777 == 0o600


@needs_root
@pytest.mark.skipif(Path(f"/run/user/{os.geteuid()}").exists(), reason="platformdirs would use /run/user/UID first")
def test_serve_exits_with_a_documented_code_when_another_user_made_its_runtime_fallback(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    fallback = tmp_path / f"runtime-{os.geteuid()}"
    fallback.mkdir(mode=0o700)
    os.chown(fallback, OTHER_UID, OTHER_GID)
    env = {k: v for k, v in fixtures.env.environ().items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cert_agent", "serve", "--port", str(free_port()), "--allow-origin", ALLOWED_ORIGIN],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == EXIT_UNSAFE_DIR, done.stderr
    assert done.stderr.splitlines()[-1] == "PRIVATE_DIR_UNSAFE"
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    assert "证书助手的私有目录不安全" in done.stderr
