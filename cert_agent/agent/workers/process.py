"""The daemon's side of a library's worker process: start it, call it, stop it.

A worker (``child.py``) serves one vendor library, each token on a thread of its own, so the
daemon may have many calls to one worker under way at once: each request goes out numbered and
its reply is matched by number when it comes back, in whatever order the tokens finish. This
module imports no driver, so the daemon's own process stays small.

On Linux and macOS the worker is a plain ``python -m cert_agent.agent.workers.child`` child talking over
one end of a socket pair (no multiprocessing machinery, whose fork server and resource tracker
would cost two more processes), which the event loop reads itself; on Windows, multiprocessing's
"spawn" with a pipe, read by a thread (``channels.py``). Either way it starts with the daemon's
environment of the moment (SOFTHSM2_CONF, TPM2_PKCS11_*, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
from typing import Any

from cert_agent.agent.errors import WorkerFailed
from cert_agent.agent.workers import protocol as wire
from cert_agent.agent.workers.channels import Channel, PipeChannel, SocketChannel
from cert_agent.agent.workers.protocol import Envelope, Reply, ScanResult, WorkerRequest

log = logging.getLogger("cert_agent.workers")


def _run(conn: Any, module: str, environment: dict[str, str]) -> None:  # Windows: the spawned child
    os.environ.clear()
    os.environ.update(environment)
    from cert_agent.agent.workers import child as worker

    worker.serve(conn, module)


class WorkerProcess:
    """One library's worker: numbered calls out, replies matched by number as they come back."""

    def __init__(self, name: str, module: str) -> None:
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._numbers = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._failed = False
        self._process: subprocess.Popen[bytes] | multiprocessing.process.BaseProcess
        if os.name == "posix":
            ours, theirs = socket.socketpair()
            command = [sys.executable, "-m", "cert_agent.agent.workers.child", str(theirs.fileno()), module]
            self._process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            theirs.close()
            self._channel: Channel = SocketChannel(ours, self._received, self._fail)
        else:
            context = multiprocessing.get_context("spawn")
            conn, child = context.Pipe()
            self._process = context.Process(
                target=_run, args=(child, module, dict(os.environ)), name=f"cert-agent-worker {name}", daemon=True
            )
            self._process.start()
            child.close()
            self._channel = PipeChannel(conn, self._received, self._fail)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return not self._failed

    async def call(self, request: WorkerRequest, *, timeout: float) -> ScanResult | bytes | None:
        """Serve ``request`` in the worker; raises what it raised (a CertAgentError),
        TimeoutError when it does not answer within ``timeout``, WorkerFailed when the process
        died."""
        if self._failed:
            raise WorkerFailed(self.name)
        number = next(self._numbers)
        answer: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[number] = answer
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self._channel.send(wire.dumps(Envelope(number, request, timeout)))
                except OSError:
                    raise WorkerFailed(self.name) from None
                reply = await answer
        finally:
            self._pending.pop(number, None)  # a late answer to a caller gone away is dropped
        if reply.error is not None:
            raise reply.error
        return reply.value

    def _received(self, data: bytes) -> None:
        """A frame from the worker (on the loop's thread): the reply it is goes to its caller."""
        try:
            message = wire.loads(data)
        except Exception as exc:  # not a reply: the worker is broken, its callers are told
            log.warning("worker %s sent no reply: %s", self.name, type(exc).__name__)
            self._channel.close()
            self._fail()
            return
        if isinstance(message, Reply):
            answer = self._pending.get(message.number)
            if answer is not None and not answer.done():
                answer.set_result(message)

    def _fail(self) -> None:
        self._failed = True
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(WorkerFailed(self.name))

    def kill(self) -> None:
        self._process.kill()
        if isinstance(self._process, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        else:
            self._process.join(timeout=5)
        self._channel.close()
        self._fail()
