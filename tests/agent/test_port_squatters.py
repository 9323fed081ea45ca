"""A process of another user on the agent's port (issue 17): the agent is never half-bound, and
says who holds the port."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from softhsm_fixtures import Fixtures
from tests.harness.agent import ALLOWED_ORIGIN, free_port, running_agent
from tests.harness.otheruser import OTHER_UID, bind_as_another_user, can_switch_user, listener_of_another_user

pytestmark = pytest.mark.skipif(not can_switch_user(), reason="needs root on Linux to run a process as another user")

EXIT_PORT_TAKEN = 4


def _serve(fixtures: Fixtures, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cert_agent", "serve", "--allow-origin", ALLOWED_ORIGIN, *args],
        env=fixtures.env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_does_not_start_half_bound_when_another_user_holds_one_address_and_names_them(
    fixtures: Fixtures, host: str
) -> None:
    port = free_port()
    with listener_of_another_user(host, port):
        process = _serve(fixtures, "--port", str(port))
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == EXIT_PORT_TAKEN, stderr
    assert "listening" not in stdout
    assert "LISTEN_FAILED" in stderr.splitlines()[-1]
    assert f"uid {OTHER_UID}" in stderr and "nobody" in stderr and "python3" in stderr
    assert "证书助手无法占用本机端口" in stderr


def test_serve_takes_the_next_port_of_its_range_when_another_user_holds_the_first(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'port = {port}\nport_range = 3\nallowed_origins = ["{ALLOWED_ORIGIN}"]\nmodules = ["{fixtures.module}"]\n',
        encoding="utf-8",
    )
    with listener_of_another_user("127.0.0.1", port):
        process = subprocess.Popen(
            [sys.executable, "-m", "cert_agent", "serve", "--config", str(config)],
            env=fixtures.env.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert f"ws://127.0.0.1:{port + 1}/ws" in line, line
            # the agent holds both loopback addresses of its port: no one else can take either
            assert bind_as_another_user("127.0.0.1", port + 1) == "EADDRINUSE"
            assert bind_as_another_user("::1", port + 1) == "EADDRINUSE"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"ports before {port + 1} are taken" in stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::"])
async def test_a_squatter_arriving_after_the_agent_cannot_take_any_address_of_its_port(
    fixtures: Fixtures, host: str
) -> None:
    async with running_agent(fixtures, listen_hosts=("127.0.0.1", "::1")) as agent:
        assert bind_as_another_user(host, agent.config.port) == "EADDRINUSE"


def test_doctor_names_another_user_holding_a_port_the_pages_try_first(fixtures: Fixtures, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'port = {port}\nport_range = 2\nallowed_origins = ["{ALLOWED_ORIGIN}"]\n', encoding="utf-8")
    with listener_of_another_user("127.0.0.1", port):
        done = subprocess.run(
            [sys.executable, "-m", "cert_agent", "doctor", "--config", str(config), "--module", fixtures.module],
            env=fixtures.env.environ(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert f"✗ 端口 {port}: 127.0.0.1:{port} 被用户 nobody (uid {OTHER_UID}) 占用" in done.stdout, done.stdout
