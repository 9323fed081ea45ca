"""How a module's worker schedules requests (``worker.Lanes``): one thread per token, so a token's
requests run in order and different tokens' at the same time; a request that waited out its time
behind its token's call is dropped unstarted; a token's lane ended by a scan comes back for its
next request. The worker here answers from a table (``Recorder``), a stand-in for the driver
because no real token can be made to take a set time per call; what is tested is the scheduling,
the same whatever the driver does, and the agent tests run it on real tokens."""

from __future__ import annotations

import threading
import time
from multiprocessing.connection import Connection, Pipe

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


def _lanes(seconds: dict[str, float]) -> tuple[Lanes, Recorder, Connection]:
    ours, theirs = Pipe()
    recorder = Recorder(seconds)
    return Lanes(recorder, theirs), recorder, ours  # type: ignore[arg-type]


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


def test_a_request_that_waited_out_its_time_is_dropped_unstarted_and_its_pin_wiped() -> None:
    lanes, recorder, conn = _lanes({"hung": 0.6})
    late_pin = Pin("000000")
    lanes.submit(Envelope(1, VerifyPin("hung", Pin("112233")), timeout=5))
    lanes.submit(Envelope(2, VerifyPin("hung", late_pin), timeout=0.3))
    replies = _replies(conn, 2)
    assert replies[2].error is not None and replies[2].error.code == "TOKEN_TIMEOUT"
    assert len(recorder.started) == 1 and len(late_pin) == 0


def test_a_lane_ended_by_a_scan_is_made_again_for_the_tokens_next_request() -> None:
    lanes, recorder, conn = _lanes({})
    lanes.submit(Envelope(1, VerifyPin("pulled", Pin("112233")), timeout=5))
    lanes.submit(Envelope(2, Scan(), timeout=5))  # the token is gone: its lane ends
    _replies(conn, 2)
    lanes.submit(Envelope(3, VerifyPin("pulled", Pin("112233")), timeout=5))  # plugged in again
    assert _replies(conn, 1)[3].error is None
    assert [token for token, _ in recorder.started] == ["pulled", "pulled"]
