"""The daemon's side of a token worker process: start it, call it, stop it.

A worker is a child process that runs ``worker.serve`` and answers one request at a time over a
pipe. This module imports nothing of PKCS#11, so the daemon's own process stays small.

Where the OS can fork (Linux, macOS), workers are forked from multiprocessing's fork server, a
process started once that has already imported the worker, the driver and PyKCS11: a new
worker costs a fork, not an interpreter start (no cold start when a token appears), and the
imported code's pages stay shared between all workers (memory grows little per token). The
fork server holds no PKCS#11 module: each worker loads its own after the fork, with the
daemon's environment of the moment (SOFTHSM2_CONF, TPM2_PKCS11_*, ...), which is sent along.
Elsewhere (Windows) workers are started with "spawn".
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.context
import os
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from cert_agent.agent import worker_protocol as wire
from cert_agent.agent.errors import WorkerFailed
from cert_agent.agent.worker_protocol import Reply, ScanResult, WorkerRequest

PRELOADED = ["cert_agent.agent.forkserver"]  # what the fork server imports before any worker is forked


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOADED)
        return context
    return multiprocessing.get_context("spawn")


def _run(conn: Connection, modules: list[str], environment: dict[str, str]) -> None:
    os.environ.clear()  # the daemon's environment now, not the fork server's from its start
    os.environ.update(environment)
    from cert_agent.agent import worker

    worker.serve(conn, modules)


class WorkerProcess:
    def __init__(self, name: str, modules: list[str]) -> None:
        context = _context()
        self.name = name
        self._conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_run, args=(child, modules, dict(os.environ)), name=f"cert-agent-worker {name}", daemon=True
        )
        self.process.start()
        child.close()
        self._lock = asyncio.Lock()
        self._unanswered = 0
        self._waiting: asyncio.Future[None] | None = None  # the answer being waited for, if any

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def call(self, request: WorkerRequest, *, timeout: float) -> ScanResult | bytes | None:
        """Serve ``request`` in the worker; raises what it raised (a CertAgentError),
        TimeoutError when it does not answer within ``timeout``, WorkerFailed when the process
        died."""
        async with self._lock:  # the worker serves one request at a time
            try:
                while self._unanswered:  # answers to requests whose callers went away
                    await asyncio.wait_for(self._readable(), timeout)
                    self._conn.recv_bytes()
                    self._unanswered -= 1
                self._conn.send_bytes(wire.dumps(request))
                try:
                    await asyncio.wait_for(self._readable(), timeout)
                except (asyncio.CancelledError, TimeoutError):
                    self._unanswered += 1  # the worker may still answer; the next call drops it
                    raise
                reply = wire.loads(self._conn.recv_bytes())
            except TimeoutError:  # an OSError too: keep it apart from a broken pipe
                raise
            except (EOFError, OSError):
                raise WorkerFailed(self.name) from None
        if not isinstance(reply, Reply):
            raise WorkerFailed(f"{self.name}: not a reply")
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def _readable(self) -> None:
        """Wait until the worker's answer (or its end) can be read, without a thread where the
        event loop can watch the pipe itself (Unix), with one where it cannot (Windows)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._conn.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(fd, wake)
        except NotImplementedError:
            await loop.run_in_executor(None, self._conn.poll, None)
            return
        self._waiting = ready
        try:
            await ready
        finally:
            self._waiting = None
            loop.remove_reader(fd)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)  # wake the caller: its read fails at once (WorkerFailed)
        with contextlib.suppress(OSError):
            self._conn.close()
