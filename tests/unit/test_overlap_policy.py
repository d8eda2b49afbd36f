"""The overlap policies' pure parts: reading the policy, the decision, the backfill plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.errors import InvalidBackfill, InvalidScheduleError
from services.lock.keys import occurrence_lock_key, schedule_lock_key
from services.model.backfill import BackfillMode, Existing, Planned, occurrences_between, plan
from services.model.overlap import Decision, OverlapPolicy, decide
from services.model.spec import parse_schedule, validate_schedule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_policy_defaults_to_skip_and_each_one_is_read() -> None:
    assert parse_schedule("interval", {"seconds": 5}).overlap_policy is OverlapPolicy.SKIP
    for policy in OverlapPolicy:
        spec = parse_schedule("interval", {"seconds": 5, "overlap_policy": policy.value})
        assert spec.overlap_policy is policy
    assert parse_schedule("interval", {"seconds": 5}).max_buffered == 100


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"overlap_policy": "queue"},
            "time_config.overlap_policy must be one of skip, buffer_one, buffer_all, "
            "cancel_other, terminate_other, allow_all, got 'queue' (str)",
        ),
        ({"overlap_policy": 1}, "time_config.overlap_policy must be one of"),
        ({"max_buffered": 0}, "time_config.max_buffered must be an integer 1-10000, got 0"),
    ],
)
def test_a_bad_policy_says_what_is_accepted(config: dict[str, object], message: str) -> None:
    problems = validate_schedule("interval", {"seconds": 5, **config})
    assert len(problems) == 1 and problems[0].startswith(message)
    with pytest.raises(InvalidScheduleError):
        parse_schedule("interval", {"seconds": 5, **config})


@pytest.mark.parametrize(
    ("policy", "running", "waiting", "expected"),
    [
        (OverlapPolicy.SKIP, False, 0, Decision.RUN),
        (OverlapPolicy.SKIP, True, 0, Decision.SKIP),
        (OverlapPolicy.BUFFER_ONE, True, 0, Decision.QUEUE),
        (OverlapPolicy.BUFFER_ONE, True, 1, Decision.SKIP),
        (OverlapPolicy.BUFFER_ONE, False, 1, Decision.SKIP),
        (OverlapPolicy.BUFFER_ALL, True, 2, Decision.QUEUE),
        (OverlapPolicy.BUFFER_ALL, False, 2, Decision.QUEUE),
        (OverlapPolicy.BUFFER_ALL, True, 3, Decision.SKIP),
        (OverlapPolicy.CANCEL_OTHER, True, 0, Decision.REPLACE),
        (OverlapPolicy.TERMINATE_OTHER, True, 0, Decision.REPLACE),
        (OverlapPolicy.CANCEL_OTHER, False, 1, Decision.SKIP),
        (OverlapPolicy.ALLOW_ALL, True, 5, Decision.RUN),
    ],
)
def test_decide(policy: OverlapPolicy, running: bool, waiting: int, expected: Decision) -> None:
    decision, reason = decide(policy, earlier_running=running, waiting=waiting, max_buffered=3)
    assert decision is expected and reason


def test_allow_all_locks_each_occurrence_by_its_epoch_milliseconds() -> None:
    key = occurrence_lock_key("abc", T0, "p:")
    assert key == f"{schedule_lock_key('abc', 'p:')}:{int(T0.timestamp()) * 1000}"
    assert key == "p:lock:schedule:abc:1767225600000"


def test_backfill_times_are_the_schedules_own_in_a_half_open_range() -> None:
    spec = parse_schedule("interval", {"seconds": 60, "start_date": T0.isoformat()})
    times = occurrences_between(spec, T0, T0 + timedelta(minutes=5))
    assert times == [T0 + timedelta(minutes=k) for k in range(5)]
    daily = parse_schedule("daily", {"hour": 2})
    assert len(occurrences_between(daily, T0, T0 + timedelta(days=7))) == 7


def test_backfill_refuses_a_bad_range_and_more_than_ten_thousand() -> None:
    spec = parse_schedule("interval", {"seconds": 1})
    with pytest.raises(InvalidBackfill, match="must be after"):
        occurrences_between(spec, T0, T0)
    assert len(occurrences_between(spec, T0, T0 + timedelta(seconds=10_000))) == 10_000
    with pytest.raises(InvalidBackfill, match="more than 10,000 occurrences"):
        occurrences_between(spec, T0, T0 + timedelta(seconds=10_001))


def test_backfill_modes() -> None:
    t = [T0 + timedelta(minutes=k) for k in range(5)]
    existing = {
        t[0]: Existing(1, "completed", True),
        t[1]: Existing(2, "failed", True),
        t[2]: Existing(1, "skipped", False),
        t[3]: Existing(1, "timed_out", True),
    }
    assert plan(t, existing, BackfillMode.MISSING) == [Planned(t[2], 2), Planned(t[4], 1)]
    assert plan(t, existing, BackfillMode.FAILED) == [Planned(t[1], 3), Planned(t[3], 2)]
    assert plan(t, existing, BackfillMode.ALL) == [
        Planned(t[0], 2),
        Planned(t[1], 3),
        Planned(t[2], 2),
        Planned(t[3], 2),
        Planned(t[4], 1),
    ]
