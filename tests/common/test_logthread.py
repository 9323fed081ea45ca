"""Logging written by a thread of its own: a log whose reader stalls costs lines, which are
counted, and never the caller's time. The sink is a real pipe that the test stops reading."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from cert_agent.common.logthread import BackgroundLog
from cert_agent.verifier.logs import JsonLinesFormatter


def test_a_stalled_sink_costs_counted_lines_and_never_blocks_the_caller() -> None:
    read_end, write_end = os.pipe()
    sink = logging.StreamHandler(os.fdopen(write_end, "w", encoding="utf-8"))
    sink.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    background = BackgroundLog([sink], capacity=100)
    logger = logging.getLogger("test.logthread")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(background.handler)
    logged = threading.Event()

    def log_a_lot() -> None:  # some 280 KiB, nobody reading: the pipe (64 KiB) fills, then the queue
        for number in range(5000):
            logger.info("line %d %s", number, "x" * 40)
        logged.set()

    chunks: list[bytes] = []

    def read_to_the_end() -> None:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)

    try:
        threading.Thread(target=log_a_lot, daemon=True).start()
        assert logged.wait(timeout=20), "logging blocked behind a full pipe"
        reader = threading.Thread(target=read_to_the_end, daemon=True)
        reader.start()  # the reader comes back
        deadline = time.monotonic() + 10
        while not background.records.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        logger.info("after the stall")
        background.stop(wait=10)
    finally:
        logger.removeHandler(background.handler)
        sink.stream.close()  # the write end: the reader sees the end
    reader.join(timeout=10)
    os.close(read_end)
    lines = b"".join(chunks).decode().splitlines()
    written = [line for line in lines if line.startswith("INFO line ")]
    notices = [line for line in lines if "log records dropped" in line]
    assert len(written) < 5000  # what the pipe and the queue held (fewer when the writer is slow to run)
    assert notices and all(notice.startswith("WARNING ") for notice in notices)
    assert len(written) + sum(int(notice.split()[1]) for notice in notices) == 5000  # each line accounted for
    assert lines[-1] == "INFO after the stall"


def test_a_traceback_is_written_as_text_made_when_it_was_logged_in_json_too() -> None:
    read_end, write_end = os.pipe()
    sink = logging.StreamHandler(os.fdopen(write_end, "w", encoding="utf-8"))
    sink.setFormatter(JsonLinesFormatter())
    background = BackgroundLog([sink])
    logger = logging.getLogger("test.logthread.json")
    logger.propagate = False
    logger.addHandler(background.handler)
    try:
        raise ValueError("the cause")
    except ValueError:
        logger.exception("it failed for %s", "this reason")
    background.stop()
    logger.removeHandler(background.handler)
    sink.stream.close()
    with os.fdopen(read_end, encoding="utf-8") as written:
        entry = json.loads(written.read())
    assert entry["message"] == "it failed for this reason"
    assert "ValueError: the cause" in entry["exception"] and "Traceback" in entry["exception"]


class _Lines(logging.Handler):
    """A handler that keeps what it is given, in order, with the moment it was written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.monotonic(), record.getMessage()))


def _logger_to(background: BackgroundLog, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(background.handler)
    return logger


def test_info_lines_gather_and_a_warning_has_them_all_written_at_once() -> None:
    sink = _Lines()
    background = BackgroundLog([sink], gather=30.0)  # far longer than the test waits
    logger = _logger_to(background, "test.logthread.gather")
    try:
        logger.info("first")
        logger.info("second")
        time.sleep(0.3)
        assert sink.lines == []  # gathering: the writer has not been woken again for them
        warned = time.monotonic()
        logger.warning("the failure")
        deadline = warned + 5
        while len(sink.lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [line for _, line in sink.lines] == ["first", "second", "the failure"]
        assert sink.lines[-1][0] - warned < 5  # not the 30 s of gathering
    finally:
        background.stop()
        logger.removeHandler(background.handler)


def test_stopping_writes_what_gathered_without_waiting_out_the_gathering() -> None:
    sink = _Lines()
    background = BackgroundLog([sink], gather=30.0)
    logger = _logger_to(background, "test.logthread.stop")
    logger.info("the last line")
    started = time.monotonic()
    background.stop(wait=10)
    logger.removeHandler(background.handler)
    assert [line for _, line in sink.lines] == ["the last line"]
    assert time.monotonic() - started < 10


def test_the_queued_record_is_a_copy_with_its_text_made_and_the_callers_record_is_left_as_it_was() -> None:
    logged, written = _Records(), _Records()
    background = BackgroundLog([written], gather=30.0)
    logger = _logger_to(background, "test.logthread.copy")
    logger.addHandler(logged)  # another handler of the same logger sees the record as logged
    arguments = ["138", "0001"]
    try:
        logger.info("phone %s****%s", *arguments, extra={"path": "/api/login/sms"})
        arguments.clear()  # the caller's arguments change after the call
    finally:
        background.stop(wait=10)  # writes what gathered
        logger.removeHandler(background.handler)
        logger.removeHandler(logged)
    [original], [queued] = logged.records, written.records
    assert queued is not original
    assert (queued.msg, queued.args, queued.getMessage()) == ("phone 138****0001", None, "phone 138****0001")
    assert vars(queued)["path"] == "/api/login/sms" and queued.name == "test.logthread.copy"
    assert (original.msg, original.args) == ("phone %s****%s", ("138", "0001"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
