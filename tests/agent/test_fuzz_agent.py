"""Fuzzing the agent's WebSocket protocol with Hypothesis, against a real `cert-agent serve`.

Generated frames for every method: values of every JSON type, unicode edge cases (lone
surrogates, NUL, astral characters), numbers past Python's int-string limit, deep nesting, and
batches sent at once on one connection. Properties:
- every text frame gets exactly one reply (by id where the frame had a usable id);
- every error carries a documented code, and never INTERNAL_ERROR;
- the connection and the daemon keep serving;
- no PIN that was sent appears in the daemon's log, and the log has no traceback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cert_agent.agent import methods
from cert_agent.common import jsontext
from softhsm_fixtures import Fixtures, build_fixtures
from tests.harness.agent import ALLOWED_ORIGIN, free_port
from tests.harness.daemon import Daemon
from tests.harness.fuzz import CASES, documented_codes, edge_text, json_values

METHODS = sorted(methods.METHODS)  # every method the agent serves, pair included
CODES = documented_codes()


@dataclass
class ServedAgent:
    url: str
    daemon: Daemon
    token_ids: list[str]
    cert_ids: list[str]
    pins_sent: set[str]


@pytest.fixture(scope="module")
def served_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedAgent]:
    """A daemon on media of the fuzz run's own (a generated changePin must never touch others')."""
    directory = tmp_path_factory.mktemp("fuzz-agent")
    fixtures: Fixtures = build_fixtures(directory / "fixtures")
    port = free_port()
    config = directory / "config.toml"
    config.write_text(
        f'port = {port}\nallowed_origins = ["{ALLOWED_ORIGIN}"]\nmodules = ["{fixtures.module}"]\n'
        'listen_hosts = ["127.0.0.1"]\npin_max_tries = 10\n',
        encoding="utf-8",
    )
    daemon = Daemon(
        [sys.executable, "-m", "cert_agent", "-v", "serve", "--config", str(config)],
        directory / "agent.log",
        env=fixtures.env.environ(),
    )
    assert "listening on" in daemon.line()
    token_ids = [f"{fixtures.module}#{t.serial}" for t in fixtures.tokens]
    cert_ids = [c.cert_id for t in fixtures.tokens for c in t.certs]
    served = ServedAgent(f"ws://127.0.0.1:{port}/ws", daemon, token_ids, cert_ids, set())
    yield served
    log = daemon.stop()
    assert daemon.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "Task exception" not in log, log[-3000:]
    for pin in served.pins_sent:
        assert pin not in log, "a PIN reached the daemon's log"


# --- strategies ------------------------------------------------------------------------------------

# Text as JSON can carry it, including what Python's json accepts but UTF-8 cannot encode.


MARKED_PIN = re.compile(r"Zq[0-9A-Za-z]{4,12}#")
marked_pins = st.from_regex(MARKED_PIN, fullmatch=True)


@st.composite
def request_frames(draw: st.DrawFn, agent: ServedAgent) -> str:
    """One text frame: a request shaped like the protocol's, with generated values in it."""
    shape = draw(st.sampled_from(["request", "request", "request", "raw", "huge", "deep"]))
    if shape == "raw":
        return draw(st.text(max_size=200))
    if shape == "huge":
        return '{"id": 1, "method": "hello", "params": {"n": ' + "7" * draw(st.integers(4300, 6000)) + "}}"
    if shape == "deep":
        depth = draw(st.integers(30, 3000))
        return '{"id": "deep", "method": "hello", "params": ' + "[" * depth + "]" * depth + "}"
    params: dict[str, Any] = {}
    field_values = {
        "tokenId": st.sampled_from(agent.token_ids) | edge_text | json_values,
        "certId": st.sampled_from(agent.cert_ids) | st.text("0123456789abcdefABCDEF", max_size=300) | json_values,
        "pin": marked_pins | st.text(min_size=1, max_size=80) | json_values,
        "oldPin": marked_pins | st.text(min_size=1, max_size=80) | json_values,
        "newPin": marked_pins | st.text(min_size=1, max_size=80) | json_values,
        "challengeNonce": st.text(min_size=40, max_size=600) | json_values,
        "algorithm": st.sampled_from(["ES256", "ES384", "PS256", "RS256", "RS512", "none", "es256"]) | json_values,
        "protocolVersions": st.lists(st.integers(-5, 5), max_size=4) | json_values,
        "pairingChallenge": st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())
        | edge_text
        | json_values,
    }
    for name in draw(st.sets(st.sampled_from(sorted(field_values)))):
        params[name] = draw(field_values[name])
    for key in ("pin", "oldPin", "newPin"):
        value = params.get(key)
        if isinstance(value, str) and MARKED_PIN.fullmatch(value):
            agent.pins_sent.add(value)  # distinctive enough that finding it in the log means it leaked
    message: dict[str, Any] = {
        "id": draw(st.integers(-(2**40), 2**40) | st.text(max_size=70) | json_values),
        "method": draw(st.sampled_from(METHODS) | edge_text | json_values),
        "params": params if draw(st.booleans()) else draw(json_values),
    }
    if draw(st.booleans()):
        message.pop(draw(st.sampled_from(["id", "method", "params"])))
    text = json.dumps(message, ensure_ascii=draw(st.booleans()))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate travels only as a JSON escape, as a browser sends it
        text = json.dumps(message)
    return text


async def _exchange(url: str, frames: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, origin=ALLOWED_ORIGIN) as ws:
        for frame in frames:
            await ws.send_str(frame)
        async with asyncio.timeout(60):
            while len(replies) < len(frames):
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, f"the connection ended: {message}"
                reply = json.loads(message.data)
                if "event" not in reply:
                    replies.append(reply)
        await ws.send_str('{"id": "alive", "method": "hello"}')
        while True:
            alive = json.loads((await ws.receive(timeout=30)).data)
            if alive.get("id") == "alive":
                return replies, alive


def _usable_id(frame: str) -> str | int | None:
    """The id the agent must answer with: the frame is JSON the agent accepts, and its id is an
    integer or a string of at most 64 characters. Otherwise the reply's id is null."""
    try:
        message = jsontext.loads(frame)
    except jsontext.JsonRejected:
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    if isinstance(request_id, str) and len(request_id) > 64:
        return None
    return request_id


@given(data=st.data(), count=st.integers(min_value=1, max_value=12))
def test_every_frame_gets_one_reply_with_a_documented_code_and_the_agent_lives_on(
    served_agent: ServedAgent, data: st.DataObject, count: int
) -> None:
    frames = [data.draw(request_frames(served_agent)) for _ in range(count)]
    CASES["agent frames"] += len(frames)
    replies, alive = asyncio.run(_exchange(served_agent.url, frames))
    assert "result" in alive
    assert len(replies) == len(frames)
    for reply in replies:
        assert ("result" in reply) != ("error" in reply), reply
        if "error" in reply:
            assert reply["error"]["code"] in CODES, reply
            assert reply["error"]["code"] != "INTERNAL_ERROR", reply
    expected_ids = Counter(json.dumps(i) for i in (_usable_id(f) for f in frames) if i is not None)
    answered_ids = Counter(json.dumps(r["id"]) for r in replies if r["id"] is not None)
    assert answered_ids == expected_ids
