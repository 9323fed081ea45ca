"""The daemon's view of the tokens: worker processes, a cached scan, and token events.

``TokenService`` owns the worker processes (see ``worker.py``), keeps the latest scan of tokens
and certificates, scans again every ``poll_interval`` seconds (and at once after a PIN
operation), and tells subscribers when a token appears, disappears or changes state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any, TypeVar

from cert_agent.agent import worker
from cert_agent.agent.config import AgentConfig
from cert_agent.errors import AgentError, TokenNotFound, TokenTimeout, WorkerFailed

log = logging.getLogger("cert_agent.tokens")
T = TypeVar("T")
DISCOVERY = "discovery"


class TokenService:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._executors: dict[str, ProcessPoolExecutor] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._problems: list[dict[str, Any]] = []
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.scanned_at = 0.0

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self._poller = asyncio.create_task(self._poll(), name="token-poller")

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for key in list(self._executors):
            self._discard(key, kill=True)

    # --- what pages see -----------------------------------------------------------------------

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._tokens.values())

    def problems(self) -> list[dict[str, Any]]:
        return list(self._problems)

    def token(self, token_id: str) -> dict[str, Any]:
        token = self._tokens.get(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        return token

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def worker_pids(self) -> dict[str, list[int]]:
        """Process ids of the workers, by token id (and "discovery"): for status and tests."""
        return {key: [p.pid for p in _processes(ex)] for key, ex in self._executors.items()}

    # --- token operations (each in the token's own worker) ------------------------------------

    async def verify_pin(self, token_id: str, pin: bytes) -> None:
        try:
            await self._call(token_id, worker.verify_pin, token_id, pin)
        finally:
            self.request_scan()

    async def change_pin(self, token_id: str, old: bytes, new: bytes) -> None:
        try:
            await self._call(token_id, worker.change_pin, token_id, old, new)
        finally:
            self.request_scan()

    async def sign(self, token_id: str, cert_id: bytes, pin: bytes, data: bytes, algorithm: str) -> bytes:
        try:
            return await self._call(token_id, worker.sign, token_id, cert_id, pin, data, algorithm)
        except AgentError as exc:
            if exc.code in ("PIN_INCORRECT", "PIN_LOCKED"):
                self.request_scan()
            raise

    # --- scanning -----------------------------------------------------------------------------

    def request_scan(self) -> None:
        self._wake.set()

    async def refresh(self) -> None:
        """Scan now (or wait for the scan under way) and publish what changed."""
        async with self._scan_lock:
            result = await self._call(DISCOVERY, worker.scan)
            self._publish(result)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._config.poll_interval)
            self._wake.clear()
            try:
                await self.refresh()
            except AgentError as exc:
                log.warning("token scan failed: %s", exc.describe())
            except Exception:  # the poller must survive anything a module does
                log.exception("token scan failed")

    def _publish(self, result: dict[str, Any]) -> None:
        self.scanned_at = time.monotonic()
        new = {t["tokenId"]: t for t in result["tokens"]}
        old = self._tokens
        self._tokens, self._problems = new, result["problems"]
        for token_id in old.keys() - new.keys():
            log.info("token removed: %s", old[token_id]["serial"])
            self._discard(token_id, kill=True)
            self._emit({"event": "tokenRemoved", "data": {"tokenId": token_id}})
        for token_id in new.keys() - old.keys():
            log.info("token inserted: %s (%s)", new[token_id]["serial"], new[token_id]["medium"])
            self._emit({"event": "tokenInserted", "data": new[token_id]})
        for token_id in new.keys() & old.keys():
            if new[token_id]["pinState"] != old[token_id]["pinState"]:
                self._emit({"event": "tokenChanged", "data": new[token_id]})

    def _emit(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that does not read loses events, not the daemon
                log.warning("event queue full; dropping %s for one subscriber", event["event"])

    # --- workers ------------------------------------------------------------------------------

    async def _call(self, key: str, function: Callable[..., T], *args: Any) -> T:
        if key != DISCOVERY and key not in self._tokens:
            raise TokenNotFound(key)
        executor = self._executor(key)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, function, *args)
            return await asyncio.wait_for(future, timeout=self._config.operation_timeout)
        except TimeoutError:
            log.warning("worker %s did not answer within %ss; restarting it", key, self._config.operation_timeout)
            self._discard(key, kill=True)
            raise TokenTimeout(key) from None
        except BrokenExecutor:
            log.warning("worker %s died; it will be restarted", key)
            self._discard(key, kill=True)
            raise WorkerFailed(key) from None

    def _executor(self, key: str) -> ProcessPoolExecutor:
        executor = self._executors.get(key)
        if executor is None:
            modules = list(self._config.modules) if key == DISCOVERY else [self._tokens[key]["module"]]
            executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker.init,
                initargs=(modules, self._config.pin_max_tries),
            )
            self._executors[key] = executor
        return executor

    def _discard(self, key: str, *, kill: bool) -> None:
        executor = self._executors.pop(key, None)
        if executor is None:
            return
        if kill:
            for process in _processes(executor):
                if process.is_alive():
                    process.kill()
        executor.shutdown(wait=False, cancel_futures=True)


def _processes(executor: ProcessPoolExecutor) -> list[Any]:
    # ProcessPoolExecutor has no public way to stop a worker stuck in a C call; its process
    # table is the only handle (stable from Python 3.8 to 3.13).
    table = getattr(executor, "_processes", None) or {}
    return list(table.values())


def current_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (Linux /proc), for status and the memory benchmark."""
    with open(f"/proc/{pid or os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
