"""The worker processes, one per library: started on first use, replaced when one dies, and
asked for scans that may outlast the daemon's patience.

A library's scan that takes longer than the caller waits (a library stuck on a medium, a slow
card read) goes on, and is not sent again while it does; its answer is taken by a later scan.
A library that did not load is not kept running: its problem is reported from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os

from cert_agent.agent.errors import TokenTimeout, WorkerFailed
from cert_agent.agent.workers.process import WorkerProcess
from cert_agent.agent.workers.protocol import ChangePin, Scan, ScanResult, Sign, VerifyPin
from cert_agent.drivers.models import LibraryProblem

log = logging.getLogger("cert_agent.tokens")


class WorkerPool:
    def __init__(self, operation_timeout: float) -> None:
        self._timeout = operation_timeout
        self._workers: dict[str, WorkerProcess] = {}  # by library
        self._unloadable: dict[str, tuple[LibraryProblem, ...]] = {}  # libraries that failed to load
        self._scans: dict[str, asyncio.Task[ScanResult | None]] = {}  # by library, under way

    async def scan(self, modules: list[str], wait: float) -> tuple[list[ScanResult], set[str]]:
        """Every library's scan result, and the libraries that did not answer within ``wait``."""
        for module in modules:
            if module not in self._scans:
                self._scans[module] = asyncio.create_task(self._scan(module), name=f"scan {module}")
        await asyncio.wait([self._scans[m] for m in modules], timeout=wait)
        results, silent = [], set()
        for module in modules:
            result = self._finished_scan(module)
            if result is None:
                silent.add(module)
            else:
                results.append(result)
        return results, silent

    async def call(
        self, module: str, token_id: str, request: VerifyPin | ChangePin | Sign
    ) -> ScanResult | bytes | None:
        try:
            return await self._worker(module).call(request, timeout=self._timeout)
        except TimeoutError:
            # The call goes on in the token's own thread of the worker; nothing is killed (a
            # library killed mid-write can tear the medium's store, and the worker serves other
            # tokens). The token's next requests wait behind it, each at most the same time.
            log.warning("token %s did not answer within %ss", token_id, self._timeout)
            raise TokenTimeout(token_id) from None
        except WorkerFailed:
            # Not discarded here: several calls learn of one death, and by the time one of them
            # runs this, a new worker may serve the library. The next call replaces a dead one.
            log.warning("the worker of %s died; it will be restarted", module)
            raise

    def pids(self) -> dict[str, int]:
        return {module: w.pid for module, w in self._workers.items() if w.pid is not None}

    def stop(self) -> None:
        for scan in self._scans.values():
            scan.cancel()
        for module in list(self._workers):
            self._discard(module)

    def _finished_scan(self, module: str) -> ScanResult | None:
        """The library's scan result if its scan has ended (and then forgotten), else None."""
        scan = self._scans[module]
        if not scan.done():
            return None
        del self._scans[module]
        if scan.cancelled():
            return None
        if scan.exception() is not None:
            log.warning("scanning %s failed: %s", module, scan.exception())
            return None
        return scan.result()

    async def _scan(self, module: str) -> ScanResult | None:
        """One library's tokens, or None when its worker did not answer."""
        if module in self._unloadable:
            return ScanResult((), self._unloadable[module])
        try:
            result = await self._worker(module).call(Scan(), timeout=self._timeout)
        except TimeoutError:
            log.warning("%s did not answer a scan within %ss", module, self._timeout)
            return None
        except WorkerFailed:
            log.warning("the worker of %s died; it will be restarted", module)
            return None
        if not isinstance(result, ScanResult):
            return None
        if any(problem.module == module for problem in result.problems):  # it did not load
            self._unloadable[module] = result.problems
            self._discard(module)
        return result

    def _worker(self, module: str) -> WorkerProcess:
        worker = self._workers.get(module)
        if worker is None or not worker.alive:
            if worker is not None:
                worker.kill()
            worker = WorkerProcess(os.path.basename(module), module)
            self._workers[module] = worker
        return worker

    def _discard(self, module: str) -> None:
        worker = self._workers.pop(module, None)
        if worker is not None:
            worker.kill()
