"""Twenty media at once, of three real implementations behind two interfaces (15 SoftHSM2 tokens and
2 tpm2-pkcs11 tokens over PKCS#11, 3 SM2 devices of the software SKF library), as an agency keeps
its clients' UKeys on one PC: all listed with distinct ids, each usable, and hung media delay
nothing but their own requests: a TPM that stops answering (its process stopped: real, and it
hangs both of its tokens) and one SoftHSM2 token stuck in C_Login while the 14 others of its
module, in the same worker process, and the SKF devices go on (a double: see tests/doubles/hang)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from softhsm_fixtures import Fixtures, build_fixtures
from softhsm_fixtures.skf_build import SkfFixtures, build_skf_fixtures
from softhsm_fixtures.taxpayers import TAXPAYERS, CertSpec, SkfContainerSpec, SkfMediumSpec, TokenSpec
from tests.harness.agent import ALLOWED_ORIGIN, NONCE, connect, running_agent, verify_auth_token
from tests.harness.hang import media_that_can_hang
from tests.harness.tpm import SoftwareTpm, tpm_available

pytestmark = pytest.mark.skipif(
    not tpm_available() and not os.environ.get("CI"),
    reason="tpm2-pkcs11, swtpm and tpm2-abrmd are not installed (scripts/setup.sh installs them)",
)
SOFTHSM_TOKENS = 15
SKF_DEVICES = 3
PIN = "112233"


@pytest.fixture
def skf_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SkfFixtures:
    specs = tuple(
        SkfMediumSpec(f"skf-{i}", f"税务UKey 客户{i:02d} SM2", f"SKF-CLIENT-{i:04d}", PIN,
                      (SkfContainerSpec("SM2CONTAINER0002", f"skf-{i}-sm2", "hairun"),))
        for i in range(SKF_DEVICES)
    )  # fmt: skip
    skf = build_skf_fixtures(tmp_path / "skf", media=specs)
    monkeypatch.setenv("SOFTSKF_DIR", str(skf.store.root))
    return skf


@pytest.fixture
def twenty(tmp_path: Path) -> Iterator[tuple[Fixtures, SoftwareTpm]]:
    specs = tuple(
        TokenSpec(f"client-{i}", f"税务UKey 客户{i:02d}", PIN, (CertSpec(f"client-{i}-ec", "hairun"),))
        for i in range(SOFTHSM_TOKENS)
    )
    fixtures = build_fixtures(tmp_path / "fixtures", tokens=specs)
    os.environ["SOFTHSM2_CONF"] = str(fixtures.env.conf)
    tpm = SoftwareTpm(tmp_path / "tpm")
    tpm.start()
    try:
        for i in range(2):
            tpm.add_token(f"TPM 客户{i}", PIN, TAXPAYERS["lanhai"].name, TAXPAYERS["lanhai"].taxpayer_id)
        yield fixtures, tpm
    finally:
        tpm.stop()


async def test_twenty_tokens_of_three_libraries_are_listed_usable_and_hung_media_delay_no_other(
    twenty: tuple[Fixtures, SoftwareTpm], skf_three: SkfFixtures, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixtures, tpm = twenty
    modules = (fixtures.module, tpm.module, skf_three.library)
    with media_that_can_hang(monkeypatch, tmp_path) as media:
        async with running_agent(fixtures, modules=modules, operation_timeout=5.0) as agent, connect(agent) as client:
            tokens = (await client.call("listCertificates"))["result"]["tokens"]
            assert len(tokens) == 20 and len({t["tokenId"] for t in tokens}) == 20
            in_tpm = [t for t in tokens if t["module"] == tpm.module]
            in_softhsm = [t for t in tokens if t["module"] == fixtures.module]
            in_skf = [t for t in tokens if t["module"] == skf_three.library]
            assert len(in_tpm) == 2 and len(in_skf) == SKF_DEVICES

            def request(token: dict[str, Any]) -> dict[str, Any]:
                cert_id = token["certificates"][0]["certId"]
                return {"tokenId": token["tokenId"], "certId": cert_id, "pin": PIN, "challengeNonce": NONCE}

            hung = [in_softhsm[0], *in_tpm]
            with media.hung(in_softhsm[0]["serial"]), tpm.stalled():
                for n, token in enumerate(hung):
                    await client.ws.send_json({"id": f"hung{n}", "method": "authenticate", "params": request(token)})

                async def one_after_another() -> list[dict[str, Any]]:
                    async with connect(agent) as tab:  # another tab: a user logging in to the next client
                        return [await tab.call("authenticate", **request(t)) for t in in_softhsm[1:] + in_skf]

                # all seventeen answered before the hung ones' time-out (5 s)
                others = await asyncio.wait_for(one_after_another(), timeout=4)
                for reply in others:
                    assert "result" in reply, reply
                    verify_auth_token(reply["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
                # the TPM's module cannot answer a scan now: the list comes anyway, with its tokens kept
                listed = await asyncio.wait_for(client.call("listCertificates"), timeout=4)
                assert len(listed["result"]["tokens"]) == 20
                for n in range(len(hung)):
                    stuck = await client.reply(f"hung{n}", timeout=15)
                    assert stuck["error"]["code"] == "TOKEN_TIMEOUT"
            for token in hung:  # the media answer again, with no restart
                again = await client.call("authenticate", **request(token))
                verify_auth_token(again["result"]["authToken"], ALLOWED_ORIGIN, NONCE)
