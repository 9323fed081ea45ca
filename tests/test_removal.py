"""A token pulled out while it is being used: every failure is a removal error, nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from softhsm_fixtures import Fixtures


def test_token_removed_while_signing_gives_removal_errors_and_the_rest_goes_on(fresh_fixtures: Fixtures) -> None:
    token = fresh_fixtures.token("ukey")
    worker = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("harness") / "removal_worker.py"),
            fresh_fixtures.module,
            token.label,
            fresh_fixtures.cert("hairun-ec").cert_id,
            token.pin,
        ],
        env=fresh_fixtures.env.environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    lines = [json.loads(worker.stdout.readline()) for _ in range(3)]  # signing works before removal
    assert all(line == {"ok": True} for line in lines)
    fresh_fixtures.env.pull_out(token.serial)  # pulled out mid-loop, possibly mid-call
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    results = [json.loads(line) for line in out.splitlines()]
    codes = {r["code"] for r in results if "code" in r}
    assert codes and codes <= {"DEVICE_REMOVED", "TOKEN_NOT_PRESENT"}
    assert results[-1] == {"remaining": len(fresh_fixtures.tokens) - 1}
