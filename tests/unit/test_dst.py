"""Wall-clock and real-instant rules across both DST transitions of 2026 in three zones.

Transitions used (local times):
  Europe/Berlin        spring 03-29 02:00 -> 03:00    fall 10-25 03:00 -> 02:00
  America/New_York     spring 03-08 02:00 -> 03:00    fall 11-01 02:00 -> 01:00
  Australia/Lord_Howe  spring 10-04 02:00 -> 02:30    fall 04-05 02:00 -> 01:30 (30-minute shift)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from services.model.fire_times import fire_times, next_fire_time
from services.model.spec import parse_schedule

pytestmark = pytest.mark.timeout(60)

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"
SPRING = {BERLIN: date(2026, 3, 29), NEW_YORK: date(2026, 3, 8), LORD_HOWE: date(2026, 10, 4)}
FALL = {BERLIN: date(2026, 10, 25), NEW_YORK: date(2026, 11, 1), LORD_HOWE: date(2026, 4, 5)}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fires_on(frequency: str, config: Mapping[str, object], zone: str, day: date) -> list[datetime]:
    """Every fire time whose local date is `day`."""
    spec = parse_schedule(frequency, {**config, "timezone": zone})
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(zone))
    local_day = [
        fire
        for fire in fire_times(spec, None, start, 80)
        if fire.astimezone(ZoneInfo(zone)).date() == day
    ]
    return local_day


DAILY = [
    # zone, hour, minute, local day, expected instants on that day
    (BERLIN, 2, 30, SPRING[BERLIN], ["2026-03-29T03:00+02:00"]),  # in the gap: end of gap
    (BERLIN, 2, 30, date(2026, 3, 28), ["2026-03-28T02:30+01:00"]),
    (BERLIN, 2, 30, date(2026, 3, 30), ["2026-03-30T02:30+02:00"]),
    (BERLIN, 2, 30, FALL[BERLIN], ["2026-10-25T02:30+02:00"]),  # repeated: the first
    (BERLIN, 2, 30, date(2026, 10, 26), ["2026-10-26T02:30+01:00"]),
    (BERLIN, 2, 0, SPRING[BERLIN], ["2026-03-29T03:00+02:00"]),
    (BERLIN, 3, 0, SPRING[BERLIN], ["2026-03-29T03:00+02:00"]),
    (BERLIN, 2, 0, FALL[BERLIN], ["2026-10-25T02:00+02:00"]),
    (NEW_YORK, 2, 30, SPRING[NEW_YORK], ["2026-03-08T03:00-04:00"]),
    (NEW_YORK, 2, 30, FALL[NEW_YORK], ["2026-11-01T02:30-05:00"]),  # not repeated in New York
    (NEW_YORK, 1, 30, FALL[NEW_YORK], ["2026-11-01T01:30-04:00"]),  # repeated: the first
    (NEW_YORK, 1, 30, SPRING[NEW_YORK], ["2026-03-08T01:30-05:00"]),
    (
        LORD_HOWE,
        2,
        30,
        SPRING[LORD_HOWE],
        ["2026-10-04T02:30+11:00"],
    ),  # exists: the gap is 02:00-02:29
    (LORD_HOWE, 2, 0, SPRING[LORD_HOWE], ["2026-10-04T02:30+11:00"]),
    (LORD_HOWE, 2, 15, SPRING[LORD_HOWE], ["2026-10-04T02:30+11:00"]),
    (LORD_HOWE, 1, 30, SPRING[LORD_HOWE], ["2026-10-04T01:30+10:30"]),
    (LORD_HOWE, 2, 30, FALL[LORD_HOWE], ["2026-04-05T02:30+10:30"]),
    (LORD_HOWE, 2, 0, FALL[LORD_HOWE], ["2026-04-05T02:00+10:30"]),  # 02:00 itself is not repeated
    (LORD_HOWE, 1, 30, FALL[LORD_HOWE], ["2026-04-05T01:30+11:00"]),  # repeated: the first
    (LORD_HOWE, 1, 45, FALL[LORD_HOWE], ["2026-04-05T01:45+11:00"]),
    (LORD_HOWE, 1, 15, FALL[LORD_HOWE], ["2026-04-05T01:15+11:00"]),
]


@pytest.mark.parametrize(("zone", "hour", "minute", "day", "expected"), DAILY)
def test_daily_fires_once_at_the_right_instant(
    zone: str, hour: int, minute: int, day: date, expected: list[str]
) -> None:
    assert fires_on("daily", {"hour": hour, "minute": minute}, zone, day) == [
        at(e) for e in expected
    ]
    cron = {"expression": f"{minute} {hour} * * *"}
    assert fires_on("cron", cron, zone, day) == [at(e) for e in expected]


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK, LORD_HOWE])
@pytest.mark.parametrize(("hour", "minute"), [(2, 30), (2, 0), (1, 30), (1, 45), (3, 0), (0, 0)])
def test_daily_fires_exactly_once_on_every_day_of_the_year(
    zone: str, hour: int, minute: int
) -> None:
    tz = ZoneInfo(zone)
    daily = parse_schedule("daily", {"hour": hour, "minute": minute, "timezone": zone})
    fires = fire_times(daily, None, datetime(2026, 1, 1, tzinfo=tz), 365)
    assert [fire.astimezone(tz).date() for fire in fires] == [
        date(2026, 1, 1) + timedelta(days=n) for n in range(365)
    ]
    for fire in fires:
        local = fire.astimezone(tz)
        wall = local.replace(hour=hour, minute=minute, tzinfo=None)
        if wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            assert (local.hour, local.minute, local.fold) == (hour, minute, 0)
        else:  # in the gap: the first instant after it, i.e. the instant the offset changed
            assert (fire - timedelta(seconds=1)).astimezone(tz).utcoffset() != local.utcoffset()
    cron = parse_schedule("cron", {"expression": f"{minute} {hour} * * *", "timezone": zone})
    assert fire_times(cron, None, datetime(2026, 1, 1, tzinfo=tz), 365) == fires


def _real_instants(zone: str, minute: int, day: date) -> list[datetime]:
    """Brute force: every UTC minute whose wall time in `zone` is on `day` at `minute`."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(hours=15)
    instants = (start + timedelta(minutes=n) for n in range(48 * 60))
    return [
        t for t in instants if t.astimezone(tz).date() == day and t.astimezone(tz).minute == minute
    ]


HOURLY_COUNTS = [
    (BERLIN, 30, SPRING[BERLIN], 23),
    (BERLIN, 30, FALL[BERLIN], 25),
    (BERLIN, 0, FALL[BERLIN], 25),
    (NEW_YORK, 0, SPRING[NEW_YORK], 23),
    (NEW_YORK, 59, FALL[NEW_YORK], 25),
    (LORD_HOWE, 15, SPRING[LORD_HOWE], 23),  # 02:15 does not exist
    (LORD_HOWE, 45, SPRING[LORD_HOWE], 24),  # 02:45 does
    (LORD_HOWE, 0, SPRING[LORD_HOWE], 23),
    (LORD_HOWE, 30, SPRING[LORD_HOWE], 24),
    (LORD_HOWE, 15, FALL[LORD_HOWE], 24),  # 01:15 is not repeated
    (LORD_HOWE, 45, FALL[LORD_HOWE], 25),  # 01:45 is
    (LORD_HOWE, 30, FALL[LORD_HOWE], 25),
    (LORD_HOWE, 0, FALL[LORD_HOWE], 24),
    (BERLIN, 30, date(2026, 7, 1), 24),
]


@pytest.mark.parametrize(("zone", "minute", "day", "count"), HOURLY_COUNTS)
def test_hourly_fires_at_every_real_instant(zone: str, minute: int, day: date, count: int) -> None:
    expected = _real_instants(zone, minute, day)
    assert len(expected) == count
    assert fires_on("hourly", {"minute": minute}, zone, day) == expected
    assert fires_on("cron", {"expression": f"{minute} * * * *"}, zone, day) == expected


def test_a_wildcard_hour_step_is_real_time_too() -> None:
    fires = fires_on("cron", {"expression": "30 */2 * * *"}, BERLIN, FALL[BERLIN])
    local = [fire.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M%z") for fire in fires]
    assert local[:3] == ["00:30+0200", "02:30+0200", "02:30+0100"] and len(local) == 13


def test_a_fixed_hour_with_minute_steps_fires_once_per_wall_time() -> None:
    spring = fires_on("cron", {"expression": "*/15 2 * * *"}, BERLIN, SPRING[BERLIN])
    assert spring == [at("2026-03-29T03:00+02:00")]  # every wall time of the gap, once
    fall = fires_on("cron", {"expression": "*/15 2 * * *"}, BERLIN, FALL[BERLIN])
    assert fall == [at(f"2026-10-25T02:{m}+02:00") for m in ("00", "15", "30", "45")]


def test_resuming_inside_a_repeated_hour() -> None:
    # Second pass (CET) of Berlin's 02:xx: a daily 02:30 already fired in the first pass.
    second_pass = at("2026-10-25T02:10+01:00")
    daily = parse_schedule("daily", {"hour": 2, "minute": 30, "timezone": BERLIN})
    assert next_fire_time(daily, second_pass, second_pass) == at("2026-10-26T02:30+01:00")
    # First pass (CEST) at 02:45: hourly :30 fires next in the second pass, at 02:30 CET.
    first_pass = at("2026-10-25T02:45+02:00")
    hourly = parse_schedule("hourly", {"minute": 30, "timezone": BERLIN})
    assert next_fire_time(hourly, first_pass, first_pass) == at("2026-10-25T02:30+01:00")
    assert next_fire_time(hourly, second_pass, second_pass) == at("2026-10-25T02:30+01:00")
    # Lord Howe repeats 01:30-01:59 only: from 01:50 (first pass), :45 comes round again, :15 not.
    lord_howe = at("2026-04-05T01:50+11:00")
    for minute, expected in [(45, "2026-04-05T01:45+10:30"), (15, "2026-04-05T02:15+10:30")]:
        spec = parse_schedule("hourly", {"minute": minute, "timezone": LORD_HOWE})
        assert next_fire_time(spec, lord_howe, lord_howe) == at(expected)
    spec = parse_schedule("daily", {"hour": 1, "minute": 45, "timezone": LORD_HOWE})
    assert next_fire_time(spec, lord_howe, lord_howe) == at("2026-04-06T01:45+10:30")


def test_weekly_monthly_and_once_follow_wall_clock_rules() -> None:
    weekly = fires_on("weekly", {"day": "sunday", "hour": 2, "minute": 30}, BERLIN, FALL[BERLIN])
    assert weekly == [at("2026-10-25T02:30+02:00")]
    monthly = fires_on("monthly", {"day": 29, "hour": 2, "minute": 30}, BERLIN, SPRING[BERLIN])
    assert monthly == [at("2026-03-29T03:00+02:00")]
    once = parse_schedule("once", {"run_at": "2026-03-08T02:30:00", "timezone": NEW_YORK})
    assert once.run_at == at("2026-03-08T03:00-04:00")


def test_interval_ignores_wall_clocks() -> None:
    spec = parse_schedule(
        "interval", {"hours": 1, "timezone": BERLIN}, created_at=at("2026-10-24T00:00Z")
    )
    fires = fire_times(spec, None, at("2026-10-24T22:00Z"), 5)
    assert [b - a for a, b in pairwise(fires)] == [timedelta(hours=1)] * 4
