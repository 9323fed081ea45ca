"""The reference tax app's side of 扫码验证: what the app does after its 扫一扫 has read the QR
code and its face check has run. It plays the phone for the demo and the tests
(``cert-verifier scan-confirm``) and shows an integrator the app API in a dozen lines.

    answer = await confirm_scan(code_text, "app-….secret", "370202199001011234")

It posts ``{"request", "idNumber", "faceVerified"}`` to the site the code names, with the app's
credential as a bearer token; a refusal raises ``AppClientError`` with the verifier's stable code.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from cert_agent.verifier.factors.scan import parse_payload


class AppClientError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


async def confirm_scan(
    code: str, credential: str, id_number: str, *, face_verified: bool = True, timeout: float = 10.0
) -> dict[str, Any]:
    """Answer the QR code ``code`` (its text); the verifier's answer, or AppClientError."""
    site, request_id = parse_payload(code)
    body = {"request": request_id, "idNumber": id_number, "faceVerified": face_verified}
    headers = {"Authorization": f"Bearer {credential}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(f"{site}/api/app/scan", json=body, headers=headers) as response,
        ):
            answer: dict[str, Any] = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise AppClientError("SITE_UNREACHABLE", f"无法连接电子税务局 {site}: {type(exc).__name__}", 0) from None
    if response.status != 200:
        error = answer.get("error", {})
        raise AppClientError(str(error.get("code", "UNEXPECTED")), str(error.get("message", "")), response.status)
    return answer
