"""Fuzzing the verifier with Hypothesis: generated HTTP requests (bodies, headers, paths, raw
bytes) against a real `cert-verifier serve`, and generated Web eID tokens and certificates
against the token validator.

Properties: no answer is a 5xx; every /api/ error is JSON with a documented code; the service
keeps serving; its log has no traceback and no SMS code; the validator accepts only the
untouched token and refuses everything else with a documented TOKEN_INVALID code.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from cert_agent.common.webeid import auth_token, choose_algorithm, signed_data
from cert_agent.verifier.errors import AuthTokenInvalid
from cert_agent.verifier.validation import AuthTokenValidator, ValidatorSettings
from softhsm_fixtures import Fixtures
from tests.harness.fuzz import CASES, documented_codes, edge_text, json_values
from tests.harness.verifier import VerifierProcess, make_auth_token

CODES = documented_codes()
ENDPOINTS = [
    ("POST", "/api/challenge"),
    ("POST", "/api/login/certificate"),
    ("POST", "/api/login/sms"),
    ("POST", "/api/login/verify"),
    ("POST", "/api/login/client"),
    ("POST", "/api/login/scan"),
    ("POST", "/api/login/scan/wait"),
    ("POST", "/api/login/cancel"),
    ("POST", "/api/login/identity"),
    ("POST", "/api/app/scan"),
    ("GET", "/api/session"),
    ("POST", "/api/session/identity"),
    ("GET", "/api/session/switch"),
    ("POST", "/api/session/switch"),
    ("GET", "/api/health"),
    ("POST", "/api/logout"),
    ("GET", "/api/history"),
    ("POST", "/api/history/1/hide"),
    ("GET", "/"),
    ("GET", "/home"),
    ("GET", "/account/certificate"),
    ("GET", "/account/identities"),
    ("GET", "/static/pages/login.js"),
]


@dataclass
class ServedVerifier:
    url: str
    origin: str
    port: int
    process: subprocess.Popen[str]


@pytest.fixture(scope="module")
def served_verifier(tmp_path_factory: pytest.TempPathFactory, shared_fixtures: Fixtures) -> Iterator[ServedVerifier]:
    directory = tmp_path_factory.mktemp("fuzz-verifier")
    server = VerifierProcess(shared_fixtures, directory)
    server.start()
    assert server.process is not None
    yield ServedVerifier(server.origin, server.origin, server.port, server.process)
    log = server.stop()
    assert server.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "failed unexpectedly" not in log, log[-3000:]
    outbox = directory / "outbox.jsonl"
    for line in outbox.read_text(encoding="utf-8").splitlines() if outbox.exists() else []:
        assert json.loads(line)["code"] not in log, "an SMS code reached the verifier's log"


# --- strategies ------------------------------------------------------------------------------------

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fields", "fields", "json", "bytes", "huge", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "huge":
        return b'{"attemptId": ' + b"9" * draw(st.integers(4300, 6000)) + b"}"
    if kind == "deep":
        depth = draw(st.integers(30, 3000))
        return b"[" * depth + b"]" * depth
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    names = [
        "kind", "nonce", "authToken", "attemptId", "personId", "code", "clientId", "phoneIndex",
        "identityId", "taxpayerId", "role", "request", "idNumber", "faceVerified",
    ]  # fmt: skip
    body = {name: draw(json_values | edge_text) for name in draw(st.sets(st.sampled_from(names)))}
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn, origin: str) -> tuple[str, str, dict[str, str], bytes]:
    method, path = draw(st.sampled_from(ENDPOINTS))
    if draw(st.integers(0, 4)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    if path.startswith("/api/history/") and draw(st.booleans()):
        segment = draw(st.text(alphabet="0123456789-abc%", min_size=1, max_size=40))
        path = f"/api/history/{segment}/hide"
    headers: dict[str, str] = {}
    content_type = draw(st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"]))
    if content_type:
        headers["Content-Type"] = content_type
    origin_header = draw(st.sampled_from([origin, origin, "null", "https://evil.example.com", None]))
    if origin_header is not None:
        headers["Origin"] = origin_header
    fetch_site = draw(st.sampled_from([None, "same-origin", "same-site", "cross-site", "none"]))
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    if draw(st.booleans()):
        headers["Cookie"] = "etax_session=" + draw(header_text).replace(";", "")
    if draw(st.integers(0, 3)) == 0:  # the app API's credential, well-formed or not
        app_id = draw(st.sampled_from(["app-0123456789abcdef", "app-", ""]))
        headers["Authorization"] = f"Bearer {app_id}.{draw(header_text)}"
    if draw(st.booleans()):
        headers["X-Fuzz-" + draw(st.text(alphabet="abcdefgh", min_size=1, max_size=8))] = draw(header_text)
    return method, path, headers, draw(bodies())


async def _send(url: str, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session,
        session.request(method, url + path, headers=headers, data=body) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text(errors="replace")


@given(data=st.data())
def test_generated_requests_never_get_a_5xx_and_api_errors_carry_documented_codes(
    served_verifier: ServedVerifier, data: st.DataObject
) -> None:
    method, path, headers, body = data.draw(requests(served_verifier.origin))
    CASES["verifier requests"] += 1
    status, content_type, text = asyncio.run(_send(served_verifier.url, method, path, headers, body))
    assert status < 500, (method, path, headers, body[:200], text[:500])
    if path.startswith("/api/") and status >= 400:
        assert content_type.startswith("application/json"), (status, text[:200])
        assert json.loads(text)["error"]["code"] in CODES, text


@given(
    raw=st.binary(max_size=400)
    | st.builds(
        lambda line, rest: line + rest,
        st.sampled_from(
            [b"POST /api/login/sms HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n", b"POST /api/challenge HTTP/1.0\r\n"]
        ),
        st.binary(max_size=300),
    )
)
def test_raw_bytes_on_the_socket_never_get_a_5xx_and_the_service_lives_on(
    served_verifier: ServedVerifier, raw: bytes
) -> None:
    CASES["verifier raw requests"] += 1
    with socket.create_connection(("127.0.0.1", served_verifier.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if answer:
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1."), answer[:200]
        assert not status_line.split(b" ")[1].startswith(b"5"), answer[:300]
    status, _, _ = asyncio.run(_send(served_verifier.url, "GET", "/", {}, b""))
    assert status == 200


# --- generated tokens and certificates ---------------------------------------------------------------

ORIGIN = "https://etax.example.com"
NONCE = base64.b64encode(b"\x07" * 32).decode()


@pytest.fixture(scope="module")
def genuine(shared_fixtures: Fixtures) -> tuple[AuthTokenValidator, dict[str, Any]]:
    import os

    os.environ["SOFTHSM2_CONF"] = str(shared_fixtures.env.conf)
    settings = ValidatorSettings.from_files(
        ORIGIN, [shared_fixtures.root_ca], [shared_fixtures.issuing_ca], [shared_fixtures.crl]
    )
    return AuthTokenValidator(settings), make_auth_token(shared_fixtures, "hairun-ec", ORIGIN, NONCE)


def _flip(data: bytes, positions: list[int]) -> bytes:
    mutable = bytearray(data)
    for position in positions:
        mutable[position % len(mutable)] ^= 1 << (position % 8)
    return bytes(mutable)


@st.composite
def mutated_tokens(draw: st.DrawFn, token: dict[str, Any]) -> dict[str, Any] | Any:
    kind = draw(st.sampled_from(["field", "certificate", "signature", "algorithm", "drop", "whole"]))
    changed = dict(token)
    if kind == "whole":
        return draw(json_values)
    if kind == "drop":
        changed.pop(draw(st.sampled_from(sorted(changed))))
    elif kind == "field":
        changed[draw(st.sampled_from([*sorted(changed), "extra"]))] = draw(json_values)
    elif kind == "certificate":
        der = base64.b64decode(token["unverifiedCertificate"])
        der = _flip(der, draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=6)))
        if draw(st.booleans()):
            der = der[: draw(st.integers(0, len(der)))]
        changed["unverifiedCertificate"] = base64.b64encode(der).decode()
    elif kind == "signature":
        changed["signature"] = base64.b64encode(draw(st.binary(min_size=1, max_size=200))).decode()
    else:
        changed["algorithm"] = draw(st.sampled_from(["ES384", "ES512", "PS256", "RS256", "none", "es256"]) | edge_text)
    return changed


def _validate(validator: AuthTokenValidator, token: Any) -> str | None:
    try:
        asyncio.run(validator.validate(token, NONCE))
    except AuthTokenInvalid as exc:
        return exc.code
    return None


@given(data=st.data())
def test_a_changed_token_is_refused_with_a_documented_code(
    genuine: tuple[AuthTokenValidator, dict[str, Any]], data: st.DataObject
) -> None:
    validator, token = genuine
    changed = data.draw(mutated_tokens(token))
    CASES["tokens"] += 1
    code = _validate(validator, changed)
    required = ("format", "unverifiedCertificate", "algorithm", "signature")
    if isinstance(changed, dict) and all(changed.get(k) == token[k] for k in required):
        assert code is None or code in CODES  # only optional fields changed (appVersion, extras)
    else:
        assert code in CODES, code


@given(
    cn=st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s and len(s.encode()) <= 64),
    digital_signature=st.booleans(),
    client_auth=st.sampled_from([None, True, False]),
    days=st.tuples(st.integers(-800, 10), st.integers(-10, 800)),
    self_signed=st.booleans(),
)
def test_generated_certificates_from_outside_the_tax_authority_are_refused(
    genuine: tuple[AuthTokenValidator, dict[str, Any]],
    cn: str,
    digital_signature: bool,
    client_auth: bool | None,
    days: tuple[int, int],
    self_signed: bool,
) -> None:
    validator, _ = genuine
    CASES["certificates"] += 1
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = key if self_signed else ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "伪造的税务 CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=max(days[0] + 1, days[1])))
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, False, False, False, False), critical=True
        )
    )
    if client_auth is not None:
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    algorithm = choose_algorithm(None, "EC", 256)
    signature_der = key.sign(signed_data(ORIGIN, NONCE, algorithm), ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(signature_der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = certificate.public_bytes(serialization.Encoding.DER)
    token = auth_token(base64.b64encode(der).decode(), algorithm, raw)
    code = _validate(validator, token)
    refusals = {"CERT_BAD_KEY_USAGE", "CERT_BAD_EKU", "CERT_EXPIRED", "CERT_NOT_YET_VALID", "CERT_UNTRUSTED"}
    assert code in refusals | {"TOKEN_MALFORMED"}, code  # malformed: a name asn1crypto cannot normalize
