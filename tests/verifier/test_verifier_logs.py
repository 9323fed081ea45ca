"""Structured logs of a real `cert-verifier serve` process: JSON lines, each request's lines
carrying its id (the load balancer's X-Request-Id when it sends one), and never an SMS code, a
session id or a PIN."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from softhsm_fixtures import Fixtures
from tests.harness.verifier import VerifierProcess, make_auth_token


async def test_the_logs_are_json_lines_with_request_ids_and_no_secrets(fixtures: Fixtures, tmp_path: Path) -> None:
    server = VerifierProcess(fixtures, tmp_path, settings='log_format = "json"\n')
    server.start()
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": server.origin}) as http:

            async def post(path: str, body: dict[str, object], **headers: str) -> tuple[aiohttp.ClientResponse, Any]:
                async with http.post(server.url + path, json=body, headers=headers) as response:
                    return response, await response.json()

            answer, challenge = await post("/api/challenge", {}, **{"X-Request-Id": "lb-4f2a9c"})
            assert answer.headers["X-Request-Id"] == "lb-4f2a9c"
            token = make_auth_token(fixtures, "hairun-ec", server.origin, challenge["nonce"])
            _, step = await post(
                "/api/login/certificate", {"kind": "enterprise", "authToken": token, "nonce": challenge["nonce"]}
            )
            await post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhang"})
            code = server.last_code()
            wrong = "000000" if code != "000000" else "111111"
            answer, _ = await post("/api/login/verify", {"attemptId": step["attemptId"], "code": wrong})
            made_here = answer.headers["X-Request-Id"]
            await post("/api/login/verify", {"attemptId": step["attemptId"], "code": code})
            session_id = next(c.value for c in jar if c.key == "etax_session")
            await post("/api/logout", {}, **{"X-Request-Id": "<script>"})  # not a token: replaced
    finally:
        stderr = server.stop()
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    access = [entry for entry in lines if entry["logger"] == "cert_agent.verifier.access"]
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("POST", "/api/challenge", 200),
        ("POST", "/api/login/certificate", 200),
        ("POST", "/api/login/sms", 200),
        ("POST", "/api/login/verify", 401),
        ("POST", "/api/login/verify", 200),
        ("POST", "/api/logout", 200),
    ]
    assert access[0]["request_id"] == "lb-4f2a9c"
    assert made_here in {e["request_id"] for e in access} and len(made_here) == 16
    assert "<script>" not in stderr
    refused = [e for e in lines if "refused" in e["message"]]
    assert refused and refused[0]["request_id"] == made_here  # the refusal is tied to its request
    for secret in (code, session_id, step["attemptId"]):
        assert secret not in stderr


async def test_control_characters_in_a_path_cannot_forge_a_text_log_line(fixtures: Fixtures, tmp_path: Path) -> None:
    verifier = VerifierProcess(fixtures, tmp_path / "v")  # the default text log
    verifier.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", verifier.port)
        writer.write(
            b"GET /x%0A2026-01-01%20INFO%20forged%1B[31mred%E2%80%A8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await reader.read()
        writer.close()
    finally:
        log = verifier.stop()
    assert "\x1b" not in log and "\u2028" not in log
    assert not any(line.startswith("2026-01-01 INFO forged") for line in log.splitlines())
    assert "/x\\x0a2026-01-01 INFO forged\\x1b[31mred\\u2028" in log
