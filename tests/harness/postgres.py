"""A real PostgreSQL server from Debian's packages, for the tests and benchmarks: initdb in a
temporary directory, listening on a loopback port, run as an unprivileged user when we are
root (PostgreSQL refuses to run as root; CI runs as root), stopped at the end.

    python -m tests.harness.postgres DIR   # start one by hand; prints its URL, stops on Ctrl-C
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.agent import free_port

UNPRIVILEGED_USER = "nobody"
_databases = itertools.count(1)


def postgres_bin() -> Path | None:
    """Debian keeps each major version's programs in /usr/lib/postgresql/N/bin."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    def __init__(self, directory: Path) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql; scripts/setup.sh installs it)")
        self.bin = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", UNPRIVILEGED_USER, "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, cwd=self.directory)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self.directory.chmod(0o700)
            for parent in self.directory.parents:  # the unprivileged user must reach its directory
                if parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o001)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"), "-o", options,
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """A new, empty database on this server; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url + "/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"


@contextmanager
def postgres_server(directory: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    with postgres_server(Path(sys.argv[1]).resolve()) as running:
        print(running.new_database(), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
