"""How a module's worker schedules requests (``worker.Lanes``): a token's requests run in order
and different tokens' at the same time, each served by the thread that read it; a request that waited out its time
behind its token's call is dropped unstarted; a token's lane ended by a scan comes back for its
next request. The worker here answers from a table (``Recorder``), a stand-in for the driver
because no real token can be made to take a set time per call; what is tested is the scheduling,
the same whatever the driver does, and the agent tests run it on real tokens."""

from __future__ import annotations

import threading
import time
from multiprocessing.connection import Connection, Pipe

import pytest

from cert_agent.agent.workers import child
from cert_agent.agent.workers import protocol as wire
from cert_agent.agent.workers.child import Lanes
from cert_agent.agent.workers.protocol import Envelope, Reply, Scan, ScanResult, VerifyPin, WorkerRequest
from cert_agent.drivers.pin import Pin


class Recorder:
    """Stands in for ``worker.Worker``: each VerifyPin takes ``seconds[token]`` and is recorded."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.started: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def handle(self, request: WorkerRequest) -> ScanResult | bytes | None:
        if isinstance(request, Scan):
            return ScanResult((), ())
        assert isinstance(request, VerifyPin)
        with self._lock:
            self.started.append((request.token_id, time.monotonic()))
        time.sleep(self.seconds.get(request.token_id, 0))
        return None


class _Daemon:
    """The daemon's end of the pipe to a ``Lanes`` serving in threads of its own."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self._others = set(threading.enumerate())  # other tests' lanes, still serving their pipes
        self.conn, theirs = Pipe()
        self.recorder = Recorder(seconds)
        lanes = Lanes(self.recorder, theirs)  # type: ignore[arg-type]
        threading.Thread(target=lanes.run, daemon=True).start()

    def submit(self, envelope: Envelope) -> None:
        self.conn.send_bytes(wire.dumps(envelope))

    def threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "worker-lane" and t not in self._others]


def _lanes(seconds: dict[str, float]) -> tuple[_Daemon, Recorder, Connection]:
    daemon = _Daemon(seconds)
    return daemon, daemon.recorder, daemon.conn


def _replies(conn: Connection, count: int) -> dict[int, Reply]:
    replies = {}
    for _ in range(count):
        assert conn.poll(10)
        reply = wire.loads(conn.recv_bytes())
        assert isinstance(reply, Reply)
        replies[reply.number] = reply
    return replies


def test_one_tokens_requests_run_in_order_and_other_tokens_meanwhile() -> None:
    lanes, recorder, conn = _lanes({"slow": 0.5})
    lanes.submit(Envelope(1, VerifyPin("slow", Pin("112233")), timeout=5))
    lanes.submit(Envelope(2, VerifyPin("slow", Pin("112233")), timeout=5))
    lanes.submit(Envelope(3, VerifyPin("fast", Pin("112233")), timeout=5))
    first = _replies(conn, 1)
    assert list(first) == [3]  # the other token did not wait for the slow one
    _replies(conn, 2)
    slow = [at for token, at in recorder.started if token == "slow"]
    (fast,) = [at for token, at in recorder.started if token == "fast"]
    assert slow[1] - slow[0] >= 0.45 and fast < slow[1]  # one after another; the other meanwhile


def test_a_request_that_waited_out_its_time_is_dropped_unstarted_and_its_pin_wiped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wiped: list[WorkerRequest] = []
    real_wipe = child._wipe

    def recorded_wipe(request: WorkerRequest) -> None:
        real_wipe(request)
        wiped.append(request)

    monkeypatch.setattr(child, "_wipe", recorded_wipe)
    lanes, recorder, conn = _lanes({"hung": 0.6})
    lanes.submit(Envelope(1, VerifyPin("hung", Pin("112233")), timeout=5))
    lanes.submit(Envelope(2, VerifyPin("hung", Pin("000000")), timeout=0.3))
    replies = _replies(conn, 2)
    assert replies[2].error is not None and replies[2].error.code == "TOKEN_TIMEOUT"
    assert len(recorder.started) == 1
    (dropped,) = wiped  # the worker's copy of the late request (the pipe carried a copy)
    assert isinstance(dropped, VerifyPin) and dropped.pin is not None and len(dropped.pin) == 0


def test_a_lane_ended_by_a_scan_is_made_again_for_the_tokens_next_request() -> None:
    lanes, recorder, conn = _lanes({})
    lanes.submit(Envelope(1, VerifyPin("pulled", Pin("112233")), timeout=5))
    lanes.submit(Envelope(2, Scan(), timeout=5))  # the token is gone: its lane ends
    _replies(conn, 2)
    lanes.submit(Envelope(3, VerifyPin("pulled", Pin("112233")), timeout=5))  # plugged in again
    assert _replies(conn, 1)[3].error is None
    assert [token for token, _ in recorder.started] == ["pulled", "pulled"]


def test_many_tokens_at_once_each_get_their_answer_and_idle_threads_end() -> None:
    lanes, recorder, conn = _lanes({f"t{i}": 0.05 for i in range(12)})
    for round_ in range(3):
        for i in range(12):
            lanes.submit(Envelope(round_ * 12 + i, VerifyPin(f"t{i}", Pin("112233")), timeout=5))
    replies = _replies(conn, 36)
    assert sorted(replies) == list(range(36)) and all(r.error is None for r in replies.values())
    time.sleep(0.2)
    assert len(lanes.threads()) <= 1 + Lanes.IDLE_THREADS  # the reader and the idle ones kept
    assert len(recorder.started) == 36


def test_the_daemon_going_away_ends_every_thread_once_its_call_is_done() -> None:
    lanes, _, conn = _lanes({"slow": 0.3})
    lanes.submit(Envelope(1, VerifyPin("slow", Pin("112233")), timeout=5))
    time.sleep(0.1)
    threads = lanes.threads()
    conn.close()
    time.sleep(0.5)
    assert threads and not any(t.is_alive() for t in threads)


def test_after_a_quiet_spell_a_hung_tokens_call_holds_up_no_other_token() -> None:
    lanes, _, conn = _lanes({"hung": 2.0})
    lanes.submit(Envelope(1, VerifyPin("warm", Pin("112233")), timeout=5))
    _replies(conn, 1)
    time.sleep(0.2)  # every thread idle: the next request's reader hands the reading to one of them
    lanes.submit(Envelope(2, VerifyPin("hung", Pin("112233")), timeout=5))
    time.sleep(0.1)
    lanes.submit(Envelope(3, VerifyPin("other", Pin("112233")), timeout=5))
    assert conn.poll(1) and wire.loads(conn.recv_bytes()).number == 3


def test_bytes_that_are_no_message_end_the_worker_so_the_daemon_starts_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lanes, _, conn = _lanes({})
    lanes.submit(Envelope(1, VerifyPin("t", Pin("112233")), timeout=5))
    _replies(conn, 1)
    conn.send_bytes(b"\x80\x05" + wire.dumps(Envelope(2, VerifyPin("t", Pin("246810")), timeout=5))[5:])
    time.sleep(0.3)
    assert not any(t.is_alive() for t in lanes.threads())
    assert "could not be read" in caplog.text and "246810" not in caplog.text
