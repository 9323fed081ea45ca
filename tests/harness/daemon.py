"""A daemon started by a test as its own process, with its log in a file.

A pipe that nobody reads while the test runs holds 64 KiB: a daemon that logs more than that
blocks on its next line, with its event loop, and the test waits for it for ever. So stderr goes
to a file, read when the daemon has stopped; stdout stays a pipe for the first lines it prints
("listening on …"), which are read as they come.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path


class Daemon:
    def __init__(
        self,
        command: list[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True, preexec_fn=preexec_fn
        )

    def line(self) -> str:
        """The next line the daemon prints on stdout ('' once it has ended)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def log(self) -> str:
        """What the daemon has logged so far."""
        return self.log_path.read_text(encoding="utf-8")

    def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 30) -> str:
        """Stop it as a service manager would (or with ``how``); what it logged."""
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # a daemon that does not stop is not left behind the test
            self.process.communicate()
            raise
        finally:
            self._log.close()
        return self.log()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode
