"""Property: random valid 5-field cron expressions agree with croniter in UTC, and fire times
are strictly increasing in zones with DST (including Lord Howe's 30-minute shift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.model.fire_times import fire_times
from services.model.spec import parse_schedule, validate_schedule

pytestmark = pytest.mark.timeout(60)

FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@st.composite
def cron_field(draw: st.DrawFn, low: int, high: int) -> str:
    def one() -> st.SearchStrategy[str]:
        value = st.integers(low, high).map(str)
        span = st.tuples(st.integers(low, high), st.integers(low, high)).map(
            lambda pair: f"{min(pair)}-{max(pair)}"
        )
        step = st.integers(1, max(1, (high - low) // 2))
        stepped = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), step).map(
            lambda pair: f"{pair[0]}/{pair[1]}"
        )
        return st.one_of(st.just("*"), value, span, stepped)

    items = draw(st.lists(one(), min_size=1, max_size=3))
    return "*" if "*" in items else ",".join(items)


@st.composite
def cron_expression(draw: st.DrawFn) -> str:
    fields = [draw(cron_field(low, high)) for low, high in FIELD_RANGES]
    if fields[2] != "*":
        # Keep a day of month that every month has (a day 30/31 in February alone never fires).
        fields[2] = draw(cron_field(1, 28))
    return " ".join(fields)


START = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=cron_expression(), start=START)
def test_utc_fire_times_equal_croniter(expression: str, start: datetime) -> None:
    assert validate_schedule("cron", {"expression": expression}) == []
    spec = parse_schedule("cron", {"expression": expression})
    ours = fire_times(spec, start, start, 20)
    cron = croniter(expression, start)
    assert ours == [cron.get_next(datetime) for _ in range(20)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=cron_expression(),
    zone=st.sampled_from(ZONES),
    # Start near a transition half the time: that is where order could break.
    start=st.one_of(
        START,
        st.sampled_from(
            [
                datetime(2026, 3, 28, 23, tzinfo=UTC),
                datetime(2026, 10, 24, 23, tzinfo=UTC),
                datetime(2026, 3, 8, 5, tzinfo=UTC),
                datetime(2026, 11, 1, 4, tzinfo=UTC),
                datetime(2026, 4, 4, 13, tzinfo=UTC),
                datetime(2026, 10, 3, 14, tzinfo=UTC),
            ]
        ),
    ),
    shift=st.integers(0, 4 * 3600),
)
def test_fire_times_strictly_increase_in_dst_zones(
    expression: str, zone: str, start: datetime, shift: int
) -> None:
    start += timedelta(seconds=shift)
    spec = parse_schedule("cron", {"expression": expression, "timezone": zone})
    fires = fire_times(spec, start, start, 20)
    assert len(fires) == 20
    assert all(a < b for a, b in pairwise(fires))
    assert fires[0] > start
    tz = ZoneInfo(zone)
    for fire in fires:
        # Every fire time is a wall time the expression names, or the end of a DST gap.
        named = croniter.match(expression, fire.astimezone(tz).replace(tzinfo=None))
        assert named or _offset(tz, fire - timedelta(seconds=1)) != _offset(tz, fire)


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(tz).utcoffset()


def _oracle(expression: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in (start, end] by another route: list every matching wall time around the
    window, map each to its instants (all of them, or the first / the end of a gap for a fixed
    hour), then sort."""
    real = expression.split()[1].startswith("*")
    margin = timedelta(hours=3)
    cron = croniter(expression, start.astimezone(tz).replace(tzinfo=None) - margin)
    instants = set()
    while (wall := cron.get_next(datetime)) <= end.astimezone(tz).replace(tzinfo=None) + margin:
        first = wall.replace(tzinfo=tz).astimezone(UTC)
        if first.astimezone(tz).replace(tzinfo=None) == wall:
            instants.add(first)
            if real:
                instants.add(wall.replace(tzinfo=tz, fold=1).astimezone(UTC))
        elif not real:
            moment = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
            while _offset(tz, moment) == _offset(tz, moment + timedelta(seconds=1)):
                moment += timedelta(seconds=1)
            instants.add(moment + timedelta(seconds=1))
    return sorted(t for t in instants if start < t <= end)


TRANSITIONS = [
    ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    minute=cron_field(0, 59),
    hour=st.one_of(st.just("*"), st.just("*/2"), cron_field(0, 23)),
    transition=st.sampled_from(TRANSITIONS),
    shift=st.integers(-3 * 3600, 3600),
)
def test_fire_times_around_transitions_match_an_oracle(
    minute: str, hour: str, transition: tuple[str, datetime], shift: int
) -> None:
    zone, moment = transition
    expression = f"{minute} {hour} * * *"
    start = moment + timedelta(seconds=shift)
    end = start + timedelta(hours=6)
    spec = parse_schedule("cron", {"expression": expression, "timezone": zone})
    fires = [t for t in fire_times(spec, start, start, 400) if t <= end]
    assert fires == _oracle(expression, ZoneInfo(zone), start, end)
