"""next_fire_time: bounds, once, interval phase, jitter order, expiry, the APScheduler trigger."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from croniter import croniter

from services.model.fire_times import fire_times, jitter_offset, next_fire_time
from services.model.spec import ScheduleSpec, parse_schedule
from services.scheduling.trigger import ScheduleTrigger

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_after_is_strict_and_now_is_inclusive() -> None:
    spec = parse_schedule("hourly", {"minute": 0})
    assert next_fire_time(spec, None, T0) == T0
    assert next_fire_time(spec, T0, T0) == T0 + timedelta(hours=1)
    assert next_fire_time(spec, None, T0 + timedelta(microseconds=1)) == T0 + timedelta(hours=1)
    assert next_fire_time(spec, T0 - timedelta(microseconds=1), T0) == T0
    # `now` does not matter once `after` is given: missed runs are the caller's to judge.
    assert next_fire_time(spec, T0, T0 + timedelta(days=3)) == T0 + timedelta(hours=1)


def test_results_are_aware_utc_whole_seconds() -> None:
    now = datetime(2026, 5, 4, 14, 3, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    shapes = [
        ("cron", {"expression": "*/7 * * * * *", "timezone": "Europe/Berlin"}),
        ("interval", {"seconds": 7, "jitter": 5}),
        ("daily", {"hour": 3, "timezone": "Australia/Lord_Howe", "jitter": 100}),
        ("once", {"run_at": "2026-05-05T00:00:00.5Z"}),
    ]
    for frequency, config in shapes:
        spec = parse_schedule(frequency, config, schedule_id="s", created_at=now)
        for fire in fire_times(spec, None, now, 5):
            assert fire.tzinfo is UTC and fire.microsecond == 0 and fire >= now


def test_naive_times_are_refused() -> None:
    spec = parse_schedule("hourly", {})
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        next_fire_time(spec, None, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        next_fire_time(spec, datetime(2026, 1, 1), T0)


def test_start_date_counts_and_bounds_every_frequency() -> None:
    start = "2026-06-01T09:00:00Z"
    shapes: list[tuple[str, dict[str, object]]] = [
        ("cron", {"expression": "0 9 * * *"}),
        ("interval", {"hours": 24}),
        ("daily", {"hour": 9}),
        ("hourly", {"minute": 0}),
        ("monthly", {"day": 1, "hour": 9}),
    ]
    for frequency, config in shapes:
        spec = parse_schedule(frequency, {**config, "start_date": start})
        assert next_fire_time(spec, None, T0) == at(start), frequency
        assert next_fire_time(spec, at(start) - timedelta(seconds=1), T0) == at(start)


def test_end_date_is_inclusive_and_then_nothing() -> None:
    spec = parse_schedule("daily", {"hour": 9, "end_date": "2026-05-06T09:00:00Z"})
    assert fire_times(spec, None, T0, 10) == [at("2026-05-05T09:00Z"), at("2026-05-06T09:00Z")]
    assert next_fire_time(spec, None, at("2026-05-06T09:00:01Z")) is None


def test_once_fires_once() -> None:
    spec = parse_schedule("once", {"run_at": "2026-05-04T12:30:00+00:00"})
    assert fire_times(spec, None, T0, 5) == [at("2026-05-04T12:30Z")]
    assert next_fire_time(spec, at("2026-05-04T12:30Z"), T0) is None
    assert next_fire_time(spec, None, at("2026-05-04T12:30:01Z")) is None
    late = parse_schedule("once", {"run_at": "2026-05-04T12:30:00Z", "start_date": "2026-05-05"})
    assert next_fire_time(late, None, T0) is None


def test_interval_phase_survives_restarts_and_is_shared() -> None:
    created = datetime(2026, 5, 1, 8, 0, 7, 999_999, tzinfo=UTC)
    spec = parse_schedule("interval", {"minutes": 7}, created_at=created)
    anchor = datetime(2026, 5, 1, 8, 0, 7, tzinfo=UTC)
    for now in (T0, T0 + timedelta(seconds=13), T0 + timedelta(days=40, seconds=1)):
        fire = next_fire_time(spec, None, now)
        assert fire is not None and fire >= now and fire - now < timedelta(minutes=7)
        assert (fire - anchor) % timedelta(minutes=7) == timedelta(0)
    assert next_fire_time(spec, None, datetime(2000, 1, 1, tzinfo=UTC)) == anchor
    other_instance = parse_schedule("interval", {"minutes": 7}, created_at=created)
    assert fire_times(spec, None, T0, 5) == fire_times(other_instance, None, T0, 5)


def test_interval_start_date_wins_over_created_at() -> None:
    spec = parse_schedule(
        "interval", {"seconds": 45, "start_date": "2026-05-04T11:59:50Z"}, created_at=T0
    )
    assert fire_times(spec, None, T0, 2) == [at("2026-05-04T12:00:35Z"), at("2026-05-04T12:01:20Z")]


def test_interval_without_anchor_is_aligned_to_the_epoch() -> None:
    spec = parse_schedule("interval", {"hours": 1})
    assert next_fire_time(spec, None, T0 + timedelta(minutes=1)) == T0 + timedelta(hours=1)


def test_cron_with_seconds_first() -> None:
    spec = parse_schedule("cron", {"expression": "15,45 0 9 * * 1"})
    assert fire_times(spec, None, T0, 3) == [
        at("2026-05-11T09:00:15Z"),
        at("2026-05-11T09:00:45Z"),
        at("2026-05-18T09:00:15Z"),
    ]


def test_rare_cron_and_the_end_of_time() -> None:
    spec = parse_schedule("cron", {"expression": "0 0 29 2 *"})
    assert next_fire_time(spec, None, datetime(2097, 1, 1, tzinfo=UTC)) == at("2104-02-29T00:00Z")
    near_end = datetime(9999, 12, 31, 12, tzinfo=UTC)
    for frequency, config in [
        ("daily", {"hour": 1}),
        ("monthly", {"day": 1, "hour": 1}),
        ("interval", {"hours": 87600}),
    ]:
        assert next_fire_time(parse_schedule(frequency, config), None, near_end) is None


def test_cron_memory_answers_like_a_fresh_croniter() -> None:
    spec = parse_schedule("cron", {"expression": "*/13 8-17 * * 1-5"})
    rng = random.Random(7)
    for _ in range(300):
        moment = T0 + timedelta(seconds=rng.randrange(0, 3 * 86400))
        expected = croniter("*/13 8-17 * * 1-5", moment).get_next(datetime)
        assert next_fire_time(spec, moment, moment) == expected


def test_jitter_is_deterministic_bounded_and_whole_seconds() -> None:
    offsets = {jitter_offset("abc", T0 + timedelta(minutes=k), 30) for k in range(500)}
    assert offsets <= set(range(31)) and len(offsets) == 31
    assert jitter_offset("abc", T0, 30) == jitter_offset("abc", T0, 30)
    assert jitter_offset("abc", T0, 0) == 0
    assert [jitter_offset(s, T0, 10**6) for s in ("a", "b", "c")] != [
        jitter_offset("a", T0, 10**6)
    ] * 3


def _brute_force(spec: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    """Every jittered fire time in [start, end], from every nominal occurrence near them."""
    fires = []
    occurrence = next_fire_time(
        ScheduleSpec(
            frequency=spec.frequency,
            timezone=spec.timezone,
            anchor=spec.anchor,
            rule=spec.rule,
            period=spec.period,
            run_at=spec.run_at,
        ),
        None,
        start - timedelta(seconds=spec.jitter + 1),
    )
    while occurrence is not None and occurrence <= end:
        fire = occurrence + timedelta(
            seconds=jitter_offset(spec.schedule_id, occurrence, spec.jitter)
        )
        in_bounds = spec.start_date is None or occurrence >= spec.start_date
        if in_bounds and (spec.end_date is None or fire <= spec.end_date) and start <= fire <= end:
            fires.append(fire)
        occurrence += spec.period or timedelta(0)
    return sorted(set(fires))


@pytest.mark.parametrize("jitter", [1, 7, 9])  # an interval's jitter stays below its period
def test_jitter_keeps_fire_times_in_order(jitter: int) -> None:
    spec = parse_schedule(
        "interval",
        {"seconds": 10, "jitter": jitter, "end_date": "2026-05-04T13:00:00Z"},
        schedule_id="f2a1",
        created_at=T0 - timedelta(days=1, seconds=3),
    )
    now = T0 + timedelta(minutes=30)
    expected = _brute_force(spec, now, at("2026-05-04T13:00Z"))
    got = fire_times(spec, None, now, 1000)
    assert got == expected and len(got) > 100
    assert all(fire <= at("2026-05-04T13:00Z") for fire in got)


def test_jitter_never_fires_before_start_date() -> None:
    spec = parse_schedule(
        "hourly", {"jitter": 3000, "start_date": "2026-05-04T14:00:00Z"}, schedule_id="x"
    )
    fires = fire_times(spec, None, T0, 24)
    assert fires[0] >= at("2026-05-04T14:00Z")
    assert fires == sorted(fires) and len(set(fires)) == 24
    nominal = [fire.replace(minute=0, second=0) for fire in fires]
    assert nominal == [at("2026-05-04T14:00Z") + timedelta(hours=k) for k in range(24)]


def is_expired(spec: ScheduleSpec, now: datetime, grace_seconds: float) -> bool:
    """What the loader reports as `expired`: no fire time at or after now - grace."""
    return next_fire_time(spec, None, now - timedelta(seconds=grace_seconds)) is None


def test_is_expired() -> None:
    once = parse_schedule("once", {"run_at": "2026-05-04T12:00:00Z"})
    assert not is_expired(once, T0 + timedelta(seconds=300), 300)
    assert is_expired(once, T0 + timedelta(seconds=301), 300)
    assert not is_expired(once, T0 - timedelta(days=1), 0)
    ended = parse_schedule("daily", {"hour": 12, "end_date": "2026-05-04T12:00:00Z"})
    assert not is_expired(ended, T0 + timedelta(seconds=10), 60)
    assert is_expired(ended, T0 + timedelta(seconds=61), 60)
    assert not is_expired(parse_schedule("daily", {"hour": 1}), T0, 0)


def test_schedule_trigger_delegates() -> None:
    spec = parse_schedule("daily", {"hour": 2, "jitter": 600}, schedule_id="abc")
    trigger = ScheduleTrigger(spec)
    assert isinstance(trigger, BaseTrigger)
    assert trigger.get_next_fire_time(None, T0) == next_fire_time(spec, None, T0)
    previous = next_fire_time(spec, None, T0)
    assert trigger.get_next_fire_time(previous, T0) == next_fire_time(spec, previous, T0)
    assert "daily" in repr(trigger)


def test_apscheduler_schedules_by_the_trigger() -> None:
    spec = parse_schedule("once", {"run_at": "2099-01-01T00:00:00Z", "jitter": 59}, schedule_id="q")
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    try:
        job = scheduler.add_job(print, trigger=ScheduleTrigger(spec), id="q")
        assert job.next_run_time == next_fire_time(spec, None, T0)
    finally:
        scheduler.shutdown(wait=False)
