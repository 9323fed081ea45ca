"""A PKCS#11 module shared by calls and had alone by a re-initialization (``drivers/pkcs11/sharing.py``)."""

from __future__ import annotations

import threading
import time


def test_a_rescan_waits_for_the_calls_under_way_and_holds_new_ones_back() -> None:

    from cert_agent.drivers.pkcs11.sharing import ModuleSharing

    gate = ModuleSharing()
    order: list[str] = []
    in_call = threading.Event()

    def call(name: str, seconds: float) -> None:
        with gate.shared():
            in_call.set()
            time.sleep(seconds)
            order.append(name)

    first = threading.Thread(target=call, args=("call under way", 0.2))
    first.start()
    in_call.wait()

    def call_after() -> None:
        while not gate._reinitializing:  # once the rescan waits
            time.sleep(0.005)
        call("call after", 0)

    later = threading.Thread(target=call_after)
    later.start()
    with gate.alone(wait=2.0) as alone:
        order.append("rescan")
        time.sleep(0.1)  # a call arriving now waits for the rescan
    first.join()
    later.join()
    assert alone and order == ["call under way", "rescan", "call after"]


def test_a_rescan_gives_way_to_a_call_that_hangs_and_then_holds_nobody_back() -> None:

    from cert_agent.drivers.pkcs11.sharing import ModuleSharing

    gate = ModuleSharing()
    release, entered = threading.Event(), threading.Event()

    def hung_call() -> None:
        with gate.shared():
            entered.set()
            release.wait()

    hung = threading.Thread(target=hung_call)
    hung.start()
    entered.wait()
    with gate.alone(wait=0.1) as first:
        pass
    time.sleep(0.3)
    started = time.monotonic()
    with gate.alone(wait=0.3) as second:  # the call under way is older than that now: skipped at once
        pass
    skipped_in = time.monotonic() - started
    with gate.shared():  # other calls go on meanwhile
        other_call_ran = True
    release.set()
    hung.join()
    assert not first and not second and skipped_in < 0.15 and other_call_ran


def test_no_call_starts_during_a_rescan_begun_when_none_was_under_way() -> None:

    from cert_agent.drivers.pkcs11.sharing import ModuleSharing

    gate = ModuleSharing()
    order: list[str] = []

    def call() -> None:
        with gate.shared():
            order.append("call")

    with gate.alone(wait=1.0) as alone:
        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.1)
        order.append("rescan done")
    caller.join()
    assert alone and order == ["rescan done", "call"]


def test_a_call_inside_a_call_is_not_held_back_by_a_waiting_rescan() -> None:

    from cert_agent.drivers.pkcs11.sharing import ModuleSharing

    gate = ModuleSharing()
    inner_took: list[float] = []
    entered = threading.Event()

    def call() -> None:
        with gate.shared():
            entered.set()
            time.sleep(0.1)  # the rescan is waiting now
            started = time.monotonic()
            with gate.shared():  # the driver's helpers enter again
                inner_took.append(time.monotonic() - started)

    caller = threading.Thread(target=call)
    caller.start()
    entered.wait()
    with gate.alone(wait=2.0) as alone:
        pass
    caller.join()
    assert alone and inner_took[0] < 0.5  # not the rescan's 2 s
