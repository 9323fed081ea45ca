"""``cert-agent serve`` as a user runs it: a real process, a TOML file, signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.agent import cert_agent, free_port


def start_serve(fixtures: Fixtures, *args: str, verbose: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cert_agent", *(["-v"] if verbose else []), "serve", *args],
        env=fixtures.env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_listening(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening on" in line, line + (process.stderr.read() if process.stderr else "")
    return line


async def test_serve_reads_the_toml_file_and_flags_override_it(fixtures: Fixtures, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'port = 1\nallowed_origins = ["https://etax.example.com"]\nmodules = ["{fixtures.module}"]\n', encoding="utf-8"
    )
    process = start_serve(fixtures, "--config", str(config), "--port", str(port))
    try:
        assert f"ws://127.0.0.1:{port}/ws" in wait_listening(process)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{port}/ws", origin="https://etax.example.com") as ws:
                await ws.send_json({"id": 1, "method": "listCertificates"})
                reply = await ws.receive_json()
                assert len(reply["result"]["tokens"]) == len(fixtures.tokens)
            refused = await session.get(
                f"http://127.0.0.1:{port}/ws",
                headers={"Origin": "https://evil.test", "Connection": "Upgrade", "Upgrade": "websocket"},
            )
            assert refused.status == 403
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "refused handshake" in stderr and "https://evil.test" in stderr


async def test_serve_also_listens_on_ipv6_loopback_when_the_machine_has_it(fixtures: Fixtures) -> None:
    port = free_port()
    process = start_serve(fixtures, "--port", str(port), "--allow-origin", "https://etax.example.com")
    try:
        wait_listening(process)
        try:
            _, writer = await asyncio.open_connection("::1", port)
        except OSError:
            return  # no IPv6 loopback on this machine: nothing to check
        writer.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_serve_refuses_an_unsafe_origin_at_start(fixtures: Fixtures) -> None:
    started = time.monotonic()
    process = start_serve(fixtures, "--allow-origin", "http://etax.example.com", "--port", str(free_port()))
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "http is allowed only for loopback origins" in stderr
    assert time.monotonic() - started < 20


def test_serve_refuses_a_broken_configuration_file(fixtures: Fixtures, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = [\n", encoding="utf-8")
    process = start_serve(fixtures, "--config", str(config))
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2 and "配置错误" in stderr


async def test_stopping_the_agent_closes_open_pages_at_once(fixtures: Fixtures) -> None:
    port = free_port()
    process = start_serve(fixtures, "--port", str(port), "--allow-origin", "https://etax.example.com")
    try:
        wait_listening(process)
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, origin="https://etax.example.com") as ws:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            message = await ws.receive(timeout=15)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1001
        process.communicate(timeout=15)
        assert process.returncode == 0 and time.monotonic() - started < 15
    finally:
        if process.poll() is None:
            process.kill()


def test_a_second_serve_says_the_agent_is_already_running_and_exits_3(fixtures: Fixtures) -> None:
    port = free_port()
    first = start_serve(fixtures, "--port", str(port), "--allow-origin", "https://etax.example.com")
    try:
        wait_listening(first)
        second = start_serve(fixtures, "--port", str(free_port()), "--allow-origin", "https://etax.example.com")
        _, stderr = second.communicate(timeout=20)
        assert second.returncode == 3, stderr
        assert f"证书助手已在运行（进程 {first.pid}，端口 {port}）" in stderr
        assert stderr.strip().splitlines()[-1] == "AGENT_ALREADY_RUNNING"
        assert "Traceback" not in stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    third = start_serve(fixtures, "--port", str(port), "--allow-origin", "https://etax.example.com")
    try:
        wait_listening(third)  # the lock ended with the first agent
    finally:
        third.send_signal(signal.SIGTERM)
        third.communicate(timeout=20)


def test_change_pin_on_the_command_line_is_refused_while_the_agent_serves(fresh_fixtures: Fixtures) -> None:
    change = ("change-pin", "--token", fresh_fixtures.token("initial-pin").label, "--pin-stdin")
    pins = "88888888\nQd2026tax\n"
    agent = start_serve(fresh_fixtures, "--port", str(free_port()), "--allow-origin", "https://etax.example.com")
    try:
        wait_listening(agent)
        refused = cert_agent(fresh_fixtures, *change, stdin=pins)
        doctor = cert_agent(fresh_fixtures, "doctor")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == "AGENT_ALREADY_RUNNING"
    assert "证书助手运行中，端口" in doctor.stdout and f"pid {agent.pid}" in doctor.stdout
    # nothing was changed: the initial PIN still works
    still_initial = cert_agent(fresh_fixtures, *change, stdin=pins)
    assert still_initial.returncode == 0, still_initial.stderr


async def test_an_agent_whose_log_nobody_reads_goes_on_serving_and_loses_no_line(fixtures: Fixtures) -> None:
    # stderr is a pipe this test does not read until the end, as a launcher that hangs would
    # leave it: the 64 KiB pipe fills after some 600 lines, and the agent must not stop there
    port = free_port()
    process = start_serve(fixtures, "--port", str(port), "--allow-origin", "https://etax.example.com", verbose=True)
    requests = 3000
    try:
        wait_listening(process)
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, origin="https://etax.example.com") as ws:
            for number in range(requests):
                await ws.send_json({"id": number, "method": "hello"})
                assert (await ws.receive_json(timeout=10))["id"] == number
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    assert process.returncode == 0
    assert sum("hello request" in line for line in log.splitlines()) == requests
