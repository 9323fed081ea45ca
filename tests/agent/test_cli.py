"""The ``cert-agent`` command, run as a user runs it: a real process against SoftHSM2 tokens."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from softhsm_fixtures import Fixtures
from softhsm_fixtures.skf_build import SkfFixtures
from tests.harness.agent import cert_agent


def test_tokens_json_lists_every_token_with_medium_and_pin_state(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "tokens", "--json")
    assert result.returncode == 0, result.stderr
    listed = {t["label"]: t for t in json.loads(result.stdout)["tokens"]}
    assert set(listed) == {t.label for t in fixtures.tokens}
    assert listed[fixtures.token("golden-tax-disk").label]["medium"] == "金税盘"
    assert listed[fixtures.token("locked").label]["pinState"] == "locked"


def test_tokens_table_is_readable_text(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "tokens")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("标签 label")
    assert fixtures.token("tax-control-disk").label in result.stdout


def test_certs_json_carries_der_and_parsed_fields(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "certs", "--json", "--token", fixtures.token("ukey").label)
    assert result.returncode == 0, result.stderr
    (cert,) = json.loads(result.stdout)["certificates"]
    assert cert["certId"] == fixtures.cert("hairun-ec").cert_id
    assert cert["info"]["taxpayerId"] == fixtures.cert("hairun-ec").taxpayer_id
    assert cert["info"]["taxpayerIdValid"] is True
    assert cert["certificate"].startswith("MII")


def test_certs_lists_the_other_certificates_when_one_is_unparsable(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "certs")
    assert result.returncode == 0
    assert "证书格式无法识别" in result.stdout
    assert "青岛海润贸易有限公司" in result.stdout and "无私钥" in result.stdout


def test_unknown_token_label_is_a_clear_error_with_a_stable_code(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "certs", "--token", "没有这个介质")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "TOKEN_NOT_FOUND"


def test_missing_module_is_reported_and_exits_nonzero(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "tokens", "--json", module="/nonexistent/libukey.so")
    assert result.returncode == 1
    assert json.loads(result.stdout)["problems"][0]["error"]["code"] == "MODULE_LOAD_FAILED"


def test_change_pin_from_stdin_changes_it_and_never_echoes_a_pin(fresh_fixtures: Fixtures) -> None:
    label = fresh_fixtures.token("initial-pin").label
    result = cert_agent(
        fresh_fixtures, "-v", "change-pin", "--token", label, "--pin-stdin", stdin="88888888\nQd2026tax\n"
    )
    assert result.returncode == 0, result.stderr
    assert "证书密码已修改" in result.stdout
    for secret in ("88888888", "Qd2026tax"):
        assert secret not in result.stdout + result.stderr
    again = cert_agent(fresh_fixtures, "change-pin", "--token", label, "--pin-stdin", stdin="88888888\nOther2026\n")
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == "PIN_INCORRECT"


def test_change_pin_refuses_the_initial_pin_as_new_pin(fresh_fixtures: Fixtures) -> None:
    label = fresh_fixtures.token("ukey").label
    result = cert_agent(fresh_fixtures, "change-pin", "--token", label, "--pin-stdin", stdin="112233\n88888888\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "PIN_POLICY"
    assert "初始密码" in result.stderr


def test_change_pin_takes_no_pin_on_the_command_line(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "change-pin", "--token", "x", "--pin", "112233")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


@pytest.fixture
def pcscd() -> Iterator[None]:
    """A real pcscd for this test, unless one already runs (a desktop, or CI's own)."""
    socket = Path("/run/pcscd/pcscd.comm")
    if socket.exists():
        yield
        return
    binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
    process = subprocess.Popen([binary, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if socket.exists():
                break
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_doctor_reports_modules_tokens_and_pcscd(fixtures: Fixtures, pcscd: None) -> None:
    result = cert_agent(fixtures, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"✓ 模块 {fixtures.module}: {len(fixtures.tokens)} 个证书介质" in result.stdout
    assert "✓ pcscd: 运行中" in result.stdout


def test_doctor_fails_for_a_module_that_does_not_load(fixtures: Fixtures) -> None:
    result = cert_agent(fixtures, "doctor", module="/nonexistent/libukey.so")
    assert result.returncode == 1
    assert "✗ 模块 /nonexistent/libukey.so" in result.stdout


def test_tokens_and_certs_cover_sm2_media_behind_an_skf_library(fixtures: Fixtures, skf_fixtures: SkfFixtures) -> None:
    tokens = cert_agent(fixtures, "tokens", "--json", module=skf_fixtures.library)
    assert tokens.returncode == 0, tokens.stderr
    listed = {t["label"]: t for t in json.loads(tokens.stdout)["tokens"]}
    assert listed["税务UKey 海润贸易 SM2"]["pinState"] == "ok"
    assert listed["税务UKey 初心科技 SM2"]["pinState"] == "to_be_changed"
    certs = cert_agent(fixtures, "certs", "--label", "税务UKey 海润贸易 SM2", module=skf_fixtures.library)
    assert certs.returncode == 0, certs.stderr
    assert "SM2-256" in certs.stdout and skf_fixtures.cert("hairun-sm2").taxpayer_id in certs.stdout


def test_change_pin_on_an_skf_medium_takes_the_devices_word(
    fixtures: Fixtures, fresh_skf_fixtures: SkfFixtures
) -> None:
    label = "税务UKey 初心科技 SM2"
    wrong = cert_agent(
        fixtures, "change-pin", "--label", label, "--pin-stdin", stdin="00000000\nQd2026sm2\n",
        module=fresh_skf_fixtures.library,
    )  # fmt: skip
    assert wrong.returncode == 1 and wrong.stderr.strip().endswith("PIN_INCORRECT") and "5" in wrong.stderr
    done = cert_agent(
        fixtures, "change-pin", "--label", label, "--pin-stdin", stdin="12345678\nQd2026sm2\n",
        module=fresh_skf_fixtures.library,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert fresh_skf_fixtures.store.pin_state("dev-sm2-default-pin", "SM2")["default"] == "0"


def test_doctor_names_the_skf_library_and_its_locked_and_default_pin_devices(
    fixtures: Fixtures, skf_fixtures: SkfFixtures, tmp_path: Path
) -> None:
    missing = str(tmp_path / "libvendor-skf.so")
    result = subprocess.run(
        [sys.executable, "-m", "cert_agent", "doctor", "--module", skf_fixtures.library, "--module", missing],
        env=fixtures.env.environ(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert f"✓ SKF 库 {skf_fixtures.library}: {len(skf_fixtures.media)} 个证书介质" in result.stdout
    assert f"✗ 模块 {missing}: {missing}: no such file" in result.stdout
    assert "✗ 税务UKey 已锁定 SM2: 证书密码已锁定" in result.stdout
    assert "• 税务UKey 初心科技 SM2: 证书密码仍为初始密码" in result.stdout
    assert result.returncode == 1  # a library did not load


def test_doctor_without_configured_origins_says_so_and_prints_no_warning(fixtures: Fixtures, tmp_path: Path) -> None:
    env = {k: v for k, v in fixtures.env.environ().items() if k != "XDG_RUNTIME_DIR"}  # platformdirs warns then
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # no configuration file
    result = subprocess.run(
        [sys.executable, "-m", "cert_agent", "doctor", "--module", fixtures.module],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "未配置允许的网站" in result.stdout
    assert "未允许 \n" not in result.stdout and not result.stdout.rstrip().endswith("未允许")
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr, result.stderr
