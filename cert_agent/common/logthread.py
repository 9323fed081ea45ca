"""Logging that never blocks the event loop.

A logging handler writes to stderr in the thread that logs. When whatever reads stderr stops
reading (a pipe whose reader hangs or never drains it, a stalled journal), the write blocks once
the pipe is full (64 KiB on Linux), and a log line on the event loop then stops the whole daemon.

``write_in_background`` puts the root logger's handlers behind a bounded queue that one thread
writes out. Logging is then only a queue put. When the queue is full, records are dropped and
counted, and the count is written as soon as there is room again. At exit what is queued is
written, for at most ``STOP_WAIT`` seconds: a stalled sink cannot keep the process alive.

The thread writes in batches: woken by a record, it lets more gather for ``GATHER`` seconds
before it writes them all. Woken for every record, it cost a busy verifier a tenth of its CPU
(each wake-up is a context switch, and the thread then contends for the interpreter with the
event loop); batched, it wakes at most 1/``GATHER`` times a second (docs/performance.md, issue
23). A record at WARNING or above ends the gathering at once, so what explains a failure is
written promptly even if the process dies next; INFO lines may appear ``GATHER`` seconds late.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Sequence
from contextlib import suppress
from logging.handlers import QueueHandler

CAPACITY = 10_000
STOP_WAIT = 2.0
GATHER = 0.05  # seconds a woken writer lets records gather before it writes them
_END = logging.makeLogRecord({"msg": "end of log"})
_TRACEBACKS = logging.Formatter()


class _DroppingQueueHandler(QueueHandler):
    """Puts records in the queue without waiting; when it is full, counts what it drops.

    ``logging.Handler.handle`` holds the handler's lock around ``emit``, so the count is safe
    across threads."""

    def __init__(self, records: queue.Queue[logging.LogRecord], urgent: threading.Event) -> None:
        super().__init__(records)
        self.dropped = 0
        self._urgent = urgent

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The message and traceback as text, made now: the arguments may change or be wiped
        after the call, and a traceback would keep the frames it passes through alive."""
        prepared = logging.LogRecord.__new__(logging.LogRecord)  # a shallow copy (copy.copy, without its detour)
        prepared.__dict__.update(record.__dict__)
        prepared.msg, prepared.args = record.getMessage(), None
        if record.exc_info:
            prepared.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            prepared.exc_info = None
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                self.queue.put_nowait(self._dropped_notice())
                self.dropped = 0
                self._urgent.set()  # the notice is a WARNING
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
        if record.levelno >= logging.WARNING:
            self._urgent.set()

    def _dropped_notice(self) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": __name__,
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": "%d log records dropped: the log's reader did not keep up",
                "args": (self.dropped,),
            }
        )


class BackgroundLog:
    """The thread that writes queued records to the handlers they were meant for."""

    def __init__(self, handlers: list[logging.Handler], capacity: int = CAPACITY, gather: float = GATHER) -> None:
        self._handlers = handlers
        self._gather = gather
        self._urgent = threading.Event()  # set by a WARNING or worse, and by stop
        self.records: queue.Queue[logging.LogRecord] = queue.Queue(capacity)
        self.handler = _DroppingQueueHandler(self.records, self._urgent)
        self._thread = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while True:
            batch = [self.records.get()]  # asleep until there is something to write
            self._urgent.wait(self._gather)
            self._urgent.clear()
            with suppress(queue.Empty):
                while True:
                    batch.append(self.records.get_nowait())
            for record in batch:
                if record is _END:
                    return
                for handler in self._handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)

    def stop(self, wait: float = STOP_WAIT) -> None:
        """Write what is queued, waiting at most ``wait`` seconds for a stalled sink."""
        try:
            self.records.put(_END, timeout=wait)
        except queue.Full:
            return
        self._urgent.set()
        self._thread.join(timeout=wait)


def write_in_background(capacity: int = CAPACITY, filters: Sequence[logging.Filter] = ()) -> BackgroundLog:
    """Move the root logger's handlers behind a queue written by a thread of its own, and
    stop making the record attributes no format here uses (caller, thread, process).

    ``filters`` run in the thread that logs, before the record is queued (one that reads a
    context variable, say the request's id, must be one of them)."""
    # What no format of ours shows is not gathered for each record: the caller's file and line
    # (a walk up the stack), the thread's and the process's names (the logging HOWTO's
    # "Optimization"). Records are made on the event loop's thread, so this is its time.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    background = BackgroundLog(list(root.handlers), capacity)
    for record_filter in filters:
        background.handler.addFilter(record_filter)
    root.handlers[:] = [background.handler]
    atexit.register(background.stop)
    return background
