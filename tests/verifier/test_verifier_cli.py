"""``cert-verifier import`` and ``cert-verifier serve`` as real processes on a real SQLite file."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cert_agent.verifier.store import MIGRATIONS, Enterprise, open_store
from softhsm_fixtures import Fixtures
from softhsm_fixtures.seed import verifier_records
from softhsm_fixtures.taxpayers import TAXPAYERS
from tests.harness.agent import free_port
from tests.harness.verifier import VerifierProcess


def verifier(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cert_agent.verifier", *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_import_json_writes_every_record(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_text(json.dumps(verifier_records(), ensure_ascii=False), encoding="utf-8")
    result = verifier("import", "--db", str(tmp_path / "v.db"), str(source))
    assert result.returncode == 0, result.stderr
    store = await open_store(tmp_path / "v.db")
    try:
        agency = TAXPAYERS["xinda"].taxpayer_id
        enterprise = await store.enterprise(agency)
        assert enterprise is not None and enterprise.is_agency
        assert len(await store.agreements_of(agency)) == 3
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "v.db") as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == len(MIGRATIONS)


def test_import_csv_files(tmp_path: Path) -> None:
    records = verifier_records()
    paths = []
    for kind, rows in records.items():
        path = tmp_path / f"{kind}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(
                [{k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
            )  # a list field (phones) as numbers separated by ";"
        paths.append(str(path))
    result = verifier("import", "--db", str(tmp_path / "v.db"), *paths)
    assert result.returncode == 0, result.stderr
    assert "5 agreements" not in result.stdout and "3 agreements" in result.stdout


def test_import_with_one_bad_record_writes_nothing(tmp_path: Path) -> None:
    records: dict[str, Any] = verifier_records()
    records["agreements"][1]["validTo"] = "next year"
    source = tmp_path / "seed.json"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = verifier("import", "--db", str(tmp_path / "v.db"), str(source))
    assert result.returncode == 1
    assert "agreements[1].validTo" in result.stderr and "seed.json line " in result.stderr
    assert not (tmp_path / "v.db").exists() or sqlite3.connect(tmp_path / "v.db").execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'enterprises'"
    ).fetchone() == (0,)


def test_import_refuses_an_invalid_taxpayer_id(tmp_path: Path) -> None:
    records: dict[str, Any] = verifier_records()
    records["enterprises"][0]["taxpayerId"] = "91370202MA3C4Q7X10"
    source = tmp_path / "seed.json"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = verifier("import", "--db", str(tmp_path / "v.db"), str(source))
    assert result.returncode == 1 and "enterprises[0].taxpayerId" in result.stderr
    assert "GB 32100 check character is wrong (it would be" in result.stderr


def test_a_bad_record_is_named_by_its_file_line_and_field(tmp_path: Path) -> None:
    persons = tmp_path / "persons.csv"
    persons.write_text(
        "personId,name,idNumber,phones\np-1,张三,370202198001011234,13800000001;13900000002\n"
        "p-2,李四,370202198001011235,1380000\n",
        encoding="utf-8",
    )
    result = verifier("import", "--db", str(tmp_path / "v.db"), str(persons))
    assert result.returncode == 1, result.stdout
    assert "persons.csv line 3 persons[1].phones: 1380000 is not a mobile number" in result.stderr
    assert not (tmp_path / "v.db").exists() or sqlite3.connect(tmp_path / "v.db").execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'persons'"
    ).fetchone() == (0,)  # nothing of the refused file is stored


def test_the_documented_sample_imports(tmp_path: Path) -> None:
    from tests.paths import ROOT

    result = verifier("import", "--db", str(tmp_path / "v.db"), str(ROOT / "docs" / "directory-sample.json"))
    assert result.returncode == 0, result.stderr


async def test_serve_answers_the_api_and_stops_cleanly(fixtures: Fixtures, tmp_path: Path) -> None:
    server = VerifierProcess(fixtures, tmp_path)
    server.start()
    assert server.process is not None
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{server.origin}/api/challenge", json={}, headers={"Origin": server.origin}
            ) as response:
                assert response.status == 200 and len((await response.json())["nonce"]) == 44
            async with session.get(f"{server.origin}/") as response:
                assert response.status == 200 and "企业业务" in await response.text()
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.communicate(timeout=20)
    assert server.process.returncode == 0
    assert (tmp_path / "v.db").exists()


def test_serve_without_a_trust_anchor_is_a_configuration_error() -> None:
    result = verifier("serve", "--port", str(free_port()))
    assert result.returncode == 2 and "trust anchor" in result.stderr


async def test_importing_again_updates_records_in_place(tmp_path: Path) -> None:
    records: dict[str, Any] = verifier_records()
    source = tmp_path / "seed.json"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert verifier("import", "--db", str(tmp_path / "v.db"), str(source)).returncode == 0
    records["enterprises"][0]["name"] = "青岛海润贸易集团有限公司"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = verifier("import", "--db", str(tmp_path / "v.db"), str(source))
    assert result.returncode == 0, result.stderr
    store = await open_store(tmp_path / "v.db")
    try:
        hairun = TAXPAYERS["hairun"].taxpayer_id
        assert await store.enterprise(hairun) == Enterprise(
            hairun, "青岛海润贸易集团有限公司", False, "国家税务总局青岛市市南区税务局"
        )
        assert len(await store.people_of(hairun)) == 2  # the roles that refer to it are still there
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("port = 99999", "port must be an integer from 1 to 65535"),
        ('port = "8090"', "port must be an integer"),
        ("secure_cookies = 1", "secure_cookies must be true or false"),
        ('revocation = "maybe"', "revocation must be one of"),
        ('crls = "one.crl"', "crls must be a list of paths"),
        ("origin = 5", "origin must be a non-empty string"),
        ("colour = 'blue'", "unknown key 'colour'"),
    ],
)
def test_a_wrong_configuration_key_or_type_is_named(tmp_path: Path, line: str, says: str) -> None:
    config = tmp_path / "verifier.toml"
    config.write_text(line + "\n", encoding="utf-8")
    result = verifier("serve", "--config", str(config), "--check-config")
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_check_config_validates_without_starting(fixtures: Fixtures, tmp_path: Path) -> None:
    config = tmp_path / "verifier.toml"
    config.write_text(
        f'origin = "https://etax.example.com"\ntrust_anchors = ["{fixtures.root_ca}"]\ncrls = ["{fixtures.crl}"]\n',
        encoding="utf-8",
    )
    result = verifier("serve", "--config", str(config), "--check-config")
    assert result.returncode == 0 and "配置有效" in result.stdout and "1 trust anchor" in result.stdout
    assert not (tmp_path / "verifier.db").exists()  # nothing started, nothing written


def test_the_documented_empty_values_mean_the_defaults(fixtures: Fixtures, tmp_path: Path) -> None:
    # docs/verifier-api.md shows ocsp_url = "" (the certificate's AIA) and the SMS gateway keys empty
    config = tmp_path / "verifier.toml"
    config.write_text(
        f'origin = "https://etax.example.com"\ntrust_anchors = ["{fixtures.issuing_ca}"]\nocsp = true\n'
        'ocsp_url = ""\nsms_gateway_url = ""\nsms_gateway_token_env = ""\n',
        encoding="utf-8",
    )
    result = verifier("serve", "--config", str(config), "--check-config")
    assert result.returncode == 0 and "配置有效" in result.stdout, result.stderr


def test_apps_are_registered_listed_and_revoked_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "v.db")
    registered = verifier("app", "register", "--db", db, "--name", "青岛税务APP")
    assert registered.returncode == 0, registered.stderr
    credential = registered.stdout.split("Bearer ...): ")[1].strip()
    app_id = credential.split(".")[0]
    assert app_id.startswith("app-") and len(credential.split(".")[1]) == 43
    listed = verifier("app", "list", "--db", db)
    assert app_id in listed.stdout and "有效 active" in listed.stdout and credential not in listed.stdout
    assert verifier("app", "revoke", "--db", db, app_id).returncode == 0
    assert "已停用 revoked" in verifier("app", "list", "--db", db).stdout
    assert verifier("app", "revoke", "--db", db, "app-0000000000000000").returncode == 1


def test_the_reference_app_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    import os

    code = f"etax-scan:1;site=http://127.0.0.1:{free_port()};r=abc"
    env = {k: v for k, v in os.environ.items() if k != "CERT_VERIFIER_APP_CREDENTIAL"}
    command = [sys.executable, "-m", "cert_agent.verifier", "scan-confirm", code, "--id-number", "1"]
    missing = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert missing.returncode == 2 and "CERT_VERIFIER_APP_CREDENTIAL" in missing.stderr
    env["CERT_VERIFIER_APP_CREDENTIAL"] = "app-0123456789abcdef." + "A" * 43
    unreachable = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert unreachable.returncode == 1 and "SITE_UNREACHABLE" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    not_a_code = subprocess.run([*command[:4], "hello", *command[5:]], capture_output=True, text=True, env=env)
    assert not_a_code.returncode == 2 and "二维码无法识别" in not_a_code.stderr
