"""Who may open the agent's WebSocket: refusals happen before the upgrade, with HTTP 403."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from cert_agent.agent.config import AgentConfig, ConfigError, _from_mapping
from cert_agent.agent.origins import OriginConfigError, normalize_origin
from tests.harness.agent import ALLOWED_ORIGIN, RunningAgent

REFUSED_ORIGINS = [
    pytest.param("https://evil.test", id="foreign"),
    pytest.param("https://etax.example.com.evil.test", id="look-alike suffix"),
    pytest.param("https://evil-etax.example.com", id="look-alike prefix"),
    pytest.param("https://etax.example.com:8443", id="another port"),
    pytest.param("http://etax.example.com", id="another scheme"),
    pytest.param("https://ETAX.example.com", id="not the serialized form"),
    pytest.param("https://etax.example.com/", id="trailing slash"),
    pytest.param("null", id="null"),
    pytest.param(None, id="missing"),
]


async def _handshake(agent: RunningAgent, headers: dict[str, str]) -> aiohttp.ClientResponse:
    """A raw upgrade request, so that the refusal itself (status and body) can be read."""
    request_headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **headers,
    }
    async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as session:
        response = await session.get(f"http://127.0.0.1:{agent.config.port}/ws", headers=request_headers)
        await response.read()
        return response


@pytest.mark.parametrize("origin", REFUSED_ORIGINS)
async def test_origin_that_is_not_exactly_allowed_is_refused_before_the_upgrade(
    agent: RunningAgent, origin: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cert_agent.server")
    headers = {"Origin": origin} if origin is not None else {}
    response = await _handshake(agent, headers)
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "ORIGIN_REFUSED"
    assert "refused handshake" in caplog.text


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("etax.example.com:{port}", id="rebinding name"),
        pytest.param("evil.test:{port}", id="foreign name"),
        pytest.param("127.0.0.1:1", id="another port"),
        pytest.param("127.0.0.2:{port}", id="other loopback address"),
    ],
)
async def test_host_that_is_not_the_agent_on_loopback_is_refused(agent: RunningAgent, host: str) -> None:
    response = await _handshake(agent, {"Origin": ALLOWED_ORIGIN, "Host": host.format(port=agent.config.port)})
    assert response.status == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
async def test_allowed_origin_on_a_loopback_host_is_upgraded(agent: RunningAgent, host: str) -> None:
    response = await _handshake(agent, {"Origin": ALLOWED_ORIGIN, "Host": host.format(port=agent.config.port)})
    assert response.status == 101


async def test_refusals_leave_the_daemon_serving(agent: RunningAgent) -> None:
    for _ in range(3):
        assert (await _handshake(agent, {"Origin": "https://evil.test"})).status == 403
    async with aiohttp.ClientSession() as session, session.ws_connect(agent.url, origin=ALLOWED_ORIGIN) as ws:
        await ws.send_json({"id": 1, "method": "hello"})
        reply = await ws.receive_json()
        assert reply["result"]["origin"] == ALLOWED_ORIGIN


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://Etax.Example.com:443/", "https://etax.example.com"),
        ("https://etax.example.com:8443", "https://etax.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost", "http://localhost"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_configured_origins_are_normalized_to_the_form_browsers_send(configured: str, expected: str) -> None:
    assert normalize_origin(configured) == expected


@pytest.mark.parametrize(
    "configured",
    ["http://etax.example.com", "https://*.example.com", "https://etax.example.com/login", "ftp://x.test", "null"],
)
def test_unsafe_or_malformed_configured_origins_are_refused(configured: str) -> None:
    with pytest.raises(OriginConfigError):
        normalize_origin(configured)


def test_configuration_keys_are_checked() -> None:
    assert _from_mapping({"port": 3000, "allowed_origins": ["https://a.test"]}, "t").port == 3000
    for bad in (
        {"port": "x"},
        {"portt": 1},
        {"allowed_origins": "https://a.test"},
        {"poll_interval": -1},
        {"listen_hosts": ["0.0.0.0"]},
        {"listen_hosts": ["127.0.0.1", "etax.example.com"]},
    ):
        with pytest.raises(ConfigError):
            _from_mapping(bad, "t")
    with pytest.raises(ConfigError):
        _from_mapping({"allowed_origins": ["http://etax.example.com"]}, "t")
    assert AgentConfig().with_overrides(origins=["https://A.test"]).allowed_origins == ("https://a.test",)
