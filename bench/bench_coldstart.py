"""Cold start: from `cert-agent serve` to "listening" (ready to accept a page's connection).

Measures the installed package (`/opt/cert-agent/bin/cert-agent`, after
`bash installer/linux/build-deb.sh && sudo dpkg -i dist/cert-agent_*.deb`) when it is there,
else this checkout's environment, and says which. Goal: <= 1 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSTALLED = Path("/opt/cert-agent/bin/cert-agent")
ROUNDS = 10


def one_start(command: list[str], port: int, home: str) -> float:
    env = dict(os.environ, HOME=home, XDG_RUNTIME_DIR=home)
    env.pop("XDG_CONFIG_HOME", None)
    started = time.perf_counter()
    agent = subprocess.Popen(
        [*command, "--port", str(port), "--allow-origin", "https://etax.example.com"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert agent.stdout is not None and "listening" in agent.stdout.readline()
    elapsed = time.perf_counter() - started
    agent.terminate()
    agent.wait(timeout=30)
    return elapsed


def main() -> None:
    if INSTALLED.exists():
        command, what = [str(INSTALLED), "serve"], f"the installed package ({INSTALLED})"
    else:
        command, what = [sys.executable, "-m", "cert_agent", "serve"], "this checkout (no package installed)"
    with tempfile.TemporaryDirectory() as home:
        one_start(command, 27199, home)  # the first start fills the page cache, as at every later login
        times = [one_start(command, 27199, home) for _ in range(ROUNDS)]
    print(f"cold start of {what}, {ROUNDS} rounds")
    median, worst = statistics.median(times) * 1000, max(times) * 1000
    print(f"  ready after median {median:.0f} ms, max {worst:.0f} ms (goal <= 1000 ms)")


if __name__ == "__main__":
    main()
