"""On a shared PC or terminal server, only the agent's own user may use it (issue 17)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from softhsm_fixtures import Fixtures
from tests.harness.agent import ALLOWED_ORIGIN, running_agent
from tests.harness.otheruser import OTHER_UID, can_switch_user, handshake

pytestmark = pytest.mark.skipif(not can_switch_user(), reason="needs root on Linux to run a process as another user")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_a_process_of_another_user_is_refused_before_the_upgrade_even_with_the_allowed_origin(
    fixtures: Fixtures, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cert_agent.server")
    async with running_agent(fixtures, listen_hosts=("127.0.0.1", "::1")) as agent:
        other = await asyncio.to_thread(handshake, host, agent.config.port, ALLOWED_ORIGIN)
        own = await asyncio.to_thread(handshake, host, agent.config.port, ALLOWED_ORIGIN, uid=None)
    assert other.uid == OTHER_UID
    assert other.status == 403 and other.json()["error"]["code"] == "USER_REFUSED"
    assert "该连接来自本机的其他用户" in other.json()["error"]["message"]
    assert own.status == 101  # the same request from the agent's own user is upgraded
    assert f"the peer is {OTHER_UID}" in caplog.text
