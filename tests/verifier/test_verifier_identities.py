"""特定主体 and 身份切换 over HTTP, on SQLite and PostgreSQL: the identity chosen after
verification, 切换主管税务机关 and 身份切换 without logging out — each switch rotates the session
id and is audited — and what a certificate login may switch to."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from softhsm_fixtures import Fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.verifier import Clock, Verifier, verifier_at

NOW = dt.datetime(2026, 3, 14, 2, 0, tzinfo=dt.UTC)
SHUANGZHENG = TAXPAYERS["shuangzheng"].taxpayer_id


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def verifier(request: pytest.FixtureRequest, fixtures: Fixtures, tmp_path: Path) -> AsyncIterator[Verifier]:
    database = request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None
    async with verifier_at(fixtures, tmp_path, Clock(NOW), database=database) as v:
        yield v


async def _verified(v: Verifier, cert: str, person: str) -> tuple[str, dict[str, Any]]:
    status, step = await v.certificate_step(cert)
    assert status == 200, step
    await v.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": person})
    status, answer = await v.post("/api/login/verify", {"attemptId": step["attemptId"], "code": v.last_code()})
    assert status == 200, answer
    return step["attemptId"], answer


def _cookie(v: Verifier) -> str:
    return next(c.value for c in v.session.cookie_jar if c.key == "etax_session")


async def test_a_cross_region_enterprise_chooses_its_identity_after_verification(verifier: Verifier) -> None:
    attempt_id, answer = await _verified(verifier, "shuangzheng-ec", "p-chen")
    kinds = [(i["identityId"], i["kind"]) for i in answer["identityChoices"]]
    assert kinds == [("", "本企业"), ("x-sz-huangdao", "跨区域报验户"), ("x-sz-jimo", "跨区税源户")]
    status, session = await verifier.post(
        "/api/login/identity", {"attemptId": attempt_id, "identityId": "x-sz-huangdao"}
    )
    assert status == 200, session
    assert session["identity"]["kind"] == "跨区域报验户" and session["taxAuthority"] == "国家税务总局青岛市黄岛区税务局"
    status, me = await verifier.get("/api/session")
    assert me["identity"]["identityId"] == "x-sz-huangdao" and me["role"] == "财务负责人"
    status, error = await verifier.post("/api/login/identity", {"attemptId": attempt_id, "identityId": ""})
    assert error["error"]["code"] == "LOGIN_EXPIRED"  # the attempt ended with the session


async def test_switching_the_tax_authority_rotates_the_session_and_is_audited(verifier: Verifier) -> None:
    attempt_id, _ = await _verified(verifier, "shuangzheng-ec", "p-chen")
    await verifier.post("/api/login/identity", {"attemptId": attempt_id, "identityId": ""})
    before = _cookie(verifier)
    status, switched = await verifier.post("/api/session/identity", {"identityId": "x-sz-jimo"})
    assert status == 200 and switched["identity"]["name"].endswith("（即墨区跨区税源户）")
    assert _cookie(verifier) != before  # a new session id
    assert await verifier.store.session(before, NOW) is None  # the old one ended
    status, error = await verifier.post("/api/session/identity", {"identityId": "x-other"})
    assert (status, error["error"]["code"]) == (403, "NO_RELATIONSHIP")
    events = [e.event for e in await verifier.store.history("p-chen")]
    assert events[-1] == "identity_switched"


async def test_a_person_switches_between_their_roles_in_the_enterprise(verifier: Verifier) -> None:
    await _verified(verifier, "hairun-ec", "p-wang")
    _, me = await verifier.get("/api/session")
    assert me["role"] == "财务负责人" and me["identities"] == []  # the highest role first; no 特定主体
    _, choices = await verifier.get("/api/session/switch")
    hairun = next(e for e in choices["enterprises"] if e["taxpayerId"] == TAXPAYERS["hairun"].taxpayer_id)
    assert hairun["roles"] == ["财务负责人", "办税员"] and hairun["allowed"]
    before = _cookie(verifier)
    status, switched = await verifier.post(
        "/api/session/switch", {"taxpayerId": TAXPAYERS["hairun"].taxpayer_id, "role": "办税员"}
    )
    assert status == 200 and switched["role"] == "办税员" and _cookie(verifier) != before
    status, error = await verifier.post(
        "/api/session/switch", {"taxpayerId": TAXPAYERS["hairun"].taxpayer_id, "role": "法定代表人"}
    )
    assert (status, error["error"]["code"]) == (403, "NO_RELATIONSHIP")  # not one of hers
    assert [e.event for e in await verifier.store.history("p-wang")][-1] == "role_switched"


async def test_a_certificate_login_switches_to_linked_enterprises_only_where_the_bureau_allows(
    verifier: Verifier,
) -> None:
    await _verified(verifier, "chuxin-ec", "p-chen")
    _, choices = await verifier.get("/api/session/switch")
    allowed = {e["taxpayerId"]: e["allowed"] for e in choices["enterprises"]}
    assert allowed == {TAXPAYERS["chuxin"].taxpayer_id: True, SHUANGZHENG: False}
    target = {"taxpayerId": SHUANGZHENG, "role": "财务负责人"}
    status, error = await verifier.post("/api/session/switch", target)
    assert (status, error["error"]["code"]) == (403, "IDENTITY_SWITCH_REFUSED")
    verifier.login.switch_scope = "linked"
    status, switched = await verifier.post("/api/session/switch", target)
    assert status == 200 and switched["enterprise"]["name"] == "青岛双正物流有限公司"
    assert len(switched["identities"]) == 3  # and its 特定主体 are now offered
    status, error = await verifier.post(
        "/api/session/switch", {"taxpayerId": TAXPAYERS["lanhai"].taxpayer_id, "role": "办税员"}
    )
    assert (status, error["error"]["code"], error["error"]["message"]) == (
        403,
        "NO_RELATIONSHIP",
        "未查询到您与该企业的关联关系信息",
    )


async def test_an_agency_login_switches_nothing(verifier: Verifier) -> None:
    status, step = await verifier.certificate_step("xinda-ec", "agency")
    await verifier.post("/api/login/sms", {"attemptId": step["attemptId"], "personId": "p-zhao"})
    await verifier.post("/api/login/verify", {"attemptId": step["attemptId"], "code": verifier.last_code()})
    await verifier.post(
        "/api/login/client", {"attemptId": step["attemptId"], "clientId": TAXPAYERS["lanhai"].taxpayer_id}
    )
    status, error = await verifier.post(
        "/api/session/switch", {"taxpayerId": TAXPAYERS["xinda"].taxpayer_id, "role": "办税员"}
    )
    assert (status, error["error"]["code"]) == (403, "IDENTITY_SWITCH_REFUSED")
