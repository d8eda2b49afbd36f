"""The bad-token throttle (services/web/auth_throttle.py) on a clock moved by hand."""

from __future__ import annotations

from services.web.auth_throttle import AuthThrottle
from tests.support.clock import ManualClock


def test_the_failures_over_the_limit_within_the_window_get_a_retry_after() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=3, window=60)
    assert [throttle.failed("10.0.0.1") for _ in range(3)] == [None, None, None]
    assert throttle.failed("10.0.0.1") == 60  # the first failure leaves the window in 60 s
    clock.advance(20)
    assert throttle.failed("10.0.0.1") == 40  # still three failures in the last 60 s
    assert not clock.slept  # it never waits: a refused client costs no thread


def test_another_address_is_not_slowed_by_one_over_the_limit() -> None:
    throttle = AuthThrottle(ManualClock(), max_failures=2, window=60)
    for _ in range(5):
        throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.2") is None
    assert throttle.failed("10.0.0.2") is None
    assert throttle.failed("10.0.0.2") is not None


def test_an_address_is_answered_401_again_once_it_waited_its_retry_after() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=2, window=10)
    throttle.failed("a")
    clock.advance(4)
    throttle.failed("a")
    clock.advance(2)
    assert throttle.failed("a") == 8  # t=6: the failure of t=4 leaves the window at t=14...
    clock.advance(3.5)
    # ...but refused ones count too: a client that keeps failing stays refused (now until the
    # failure of t=6 leaves, at 16) until it pauses for its Retry-After.
    assert throttle.failed("a") == 7
    clock.advance(7)
    assert throttle.failed("a") is None


def test_retry_after_is_a_whole_number_of_seconds_rounded_up() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=2, window=10)
    throttle.failed("a")
    clock.advance(9.7)
    throttle.failed("a")
    assert throttle.failed("a") == 10  # 9.7 + 10 - 9.7, whole seconds
    clock.advance(0.2)
    assert throttle.failed("a") == 10  # ceil(9.8)


def test_the_table_is_bounded_and_forgets_the_least_recently_failing_address() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=1, window=3600, max_clients=100)
    throttle.failed("old")
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert throttle.failed("old") is None  # forgotten: starts again from nothing
    assert throttle.failed("10.0.39.15") is not None  # the latest are remembered
