from __future__ import annotations

import gc
import threading
import time
import weakref

from services.ops.timer import IDLE_EXIT, TimerThread
from tests.support.waiting import wait_until


def test_calls_run_in_due_order_and_cancelled_ones_never() -> None:
    timer = TimerThread("t-order")
    seen: list[str] = []
    now = time.monotonic()
    timer.call_at(now + 0.06, lambda: seen.append("c"))
    timer.call_at(now + 0.02, lambda: seen.append("a"))
    timer.call_at(now + 0.04, lambda: seen.append("b")).cancel()
    wait_until(lambda: seen == ["a", "c"], 2, 0.01, "both calls")


def test_a_cancelled_call_keeps_nothing_alive_and_the_thread_exits_when_idle() -> None:
    timer = TimerThread("t-idle")

    class Payload:
        def run(self) -> None: ...

    payload = Payload()
    ref = weakref.ref(payload)
    handle = timer.call_later(3600, payload.run)
    handle.cancel()
    del payload
    gc.collect()
    assert ref() is None  # the far-future entry no longer holds its callback
    wait_until(
        lambda: not any(t.name == "t-idle" for t in threading.enumerate()),
        IDLE_EXIT + 2,
        0.02,
        "idle timer thread exits",
    )
    fired = threading.Event()
    timer.call_later(0.01, fired.set)  # and comes back when needed
    assert fired.wait(2)


def test_a_deadline_beyond_what_a_wait_can_hold_does_not_stop_the_thread() -> None:
    # Condition.wait(1e12) raises OverflowError; once, that killed the thread and every later
    # call (lock renewals, time-outs) silently never ran.
    timer = TimerThread("t-far")
    seen: list[str] = []
    far = timer.call_later(1e12, lambda: seen.append("far"))
    timer.call_later(0.05, lambda: seen.append("near"))
    wait_until(lambda: seen == ["near"], 2, 0.01, "the near call despite a far one")
    far.cancel()
