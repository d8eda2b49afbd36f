"""The heartbeat and reaper periods derived from LOCK_TIMEOUT (issue 21): a dead instance's rows
are abandoned within LOCK_TIMEOUT + SCHEDULE_CHECK_INTERVAL, a live one survives a pause of 3/4
of the heartbeat TTL."""

from __future__ import annotations

import itertools

import pytest

from services.engine.liveness_timing import LivenessTiming


@pytest.mark.parametrize(
    ("lock", "heartbeat", "check", "ttl", "beat", "sweep"),
    [
        (5, 5, 2, 5, 1.25, 1.25),  # the case: the TTL no longer 15 s
        (60, 5, 60, 15, 3.75, 3.75),  # the defaults (HEARTBEAT_INTERVAL=5): the TTL unchanged
        (3, 0.5, 2, 1.5, 0.375, 0.375),  # the fault suite's settings
        (60, 30, 10, 60, 15, 10),  # a long heartbeat: the sweep follows the check interval
        (1, 0.2, 0.1, 0.6, 0.15, 0.1),  # every setting at its minimum
    ],
)
def test_periods_follow_the_rule(
    lock: float, heartbeat: float, check: float, ttl: float, beat: float, sweep: float
) -> None:
    t = LivenessTiming.derive(lock_timeout=lock, heartbeat_interval=heartbeat, check_interval=check)
    assert (t.ttl, t.beat, t.sweep) == pytest.approx((ttl, beat, sweep))
    assert t.max_gap == pytest.approx(ttl / 2)
    assert t.settle == pytest.approx(ttl)
    assert t.ttl_ms == round(ttl * 1000)


GRID = list(
    itertools.product([1, 2, 5, 10, 60, 600], [0.2, 0.5, 1, 5, 30, 300], [0.1, 1, 2, 60, 600])
)


def test_a_dead_instance_is_reaped_within_the_bound() -> None:
    """Worst case: the heartbeat lapses a TTL after the death, the lock LOCK_TIMEOUT after it,
    and the sweep that sees both comes one sweep period later."""
    for lock, heartbeat, check in GRID:
        t = LivenessTiming.derive(
            lock_timeout=lock, heartbeat_interval=heartbeat, check_interval=check
        )
        assert max(t.ttl, lock) + t.sweep <= lock + check, (lock, heartbeat, check)


def test_a_live_instance_outlasts_a_pause_before_its_heartbeat_lapses() -> None:
    """A frozen instance keeps its heartbeat for ttl - beat >= 3/4 TTL (3.75 s at LOCK_TIMEOUT=5
    with the default HEARTBEAT_INTERVAL) and its locks, renewed every LOCK_TIMEOUT/3, for 2/3 of
    LOCK_TIMEOUT; both must be gone before a row is abandoned, so at LOCK_TIMEOUT=5 a 3-s freeze
    abandons nothing whatever HEARTBEAT_INTERVAL says. Our own beats count as late only past
    half the TTL of silence, beyond a normal period."""
    for lock, heartbeat, check in GRID:
        t = LivenessTiming.derive(
            lock_timeout=lock, heartbeat_interval=heartbeat, check_interval=check
        )
        case = (lock, heartbeat, check)
        assert t.ttl - t.beat >= 0.75 * t.ttl, case
        assert t.beat < t.max_gap < t.ttl - t.beat + 1e-9, case
        assert t.ttl <= 3 * heartbeat and t.beat <= heartbeat, case
        if lock == 5:
            assert max(t.ttl - t.beat, 2 * lock / 3) > 3, case
            if heartbeat == 5:
                assert t.ttl - t.beat == 3.75, case


def test_heartbeat_interval_still_caps_the_period() -> None:
    t = LivenessTiming.derive(lock_timeout=600, heartbeat_interval=1, check_interval=60)
    assert (t.ttl, t.beat, t.sweep) == (3, 0.75, 0.75)
