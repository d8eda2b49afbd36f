"""The bad-token throttle (services/web/auth_throttle.py) on a clock moved by hand."""

from __future__ import annotations

from services.web.auth_throttle import SLOWDOWN_SECONDS, AuthThrottle
from tests.support.clock import ManualClock


def test_the_failures_over_the_limit_within_the_window_are_slowed() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=3, window=60)
    assert [throttle.failed("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert throttle.failed("10.0.0.1") == SLOWDOWN_SECONDS
    clock.advance(20)
    assert throttle.failed("10.0.0.1") == SLOWDOWN_SECONDS  # still three in the last 60 s
    assert not clock.slept  # it never waits itself: the answer's sender awaits the delay


def test_another_address_is_not_slowed_by_one_over_the_limit() -> None:
    throttle = AuthThrottle(ManualClock(), max_failures=2, window=60)
    for _ in range(5):
        throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.2") == 0
    assert throttle.failed("10.0.0.2") == 0
    assert throttle.failed("10.0.0.2") == SLOWDOWN_SECONDS


def test_an_address_is_answered_at_once_again_once_it_paused_for_a_window() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=2, window=10)
    throttle.failed("a")
    clock.advance(4)
    throttle.failed("a")
    clock.advance(2)
    assert throttle.failed("a") == SLOWDOWN_SECONDS  # t=6: two failures in the last 10 s
    clock.advance(3.5)
    # Slowed ones count too: a client that keeps failing stays slowed (t=9.5: the failures of
    # t=4 and t=6 are in the window)...
    assert throttle.failed("a") == SLOWDOWN_SECONDS
    clock.advance(7)
    # ...until it pauses: at t=16.5 only the one of t=9.5 is.
    assert throttle.failed("a") == 0


def test_the_table_is_bounded_and_forgets_the_least_recently_failing_address() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=1, window=3600, max_clients=100)
    throttle.failed("old")
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert throttle.failed("old") == 0  # forgotten: starts again from nothing
    assert throttle.failed("10.0.39.15") == SLOWDOWN_SECONDS  # the latest are remembered
