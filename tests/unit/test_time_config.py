"""Parsing and validation of (frequency, time_config): valid shapes and every error message."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import InvalidScheduleError
from services.model.fire_times import fire_times
from services.model.spec import (
    COMMON_KEYS,
    FREQUENCIES,
    SHAPE_KEYS,
    ScheduleSpec,
    parse_schedule,
    validate_schedule,
)

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 1, 15, 10, 7, 30, tzinfo=UTC)  # a Thursday


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


VALID = [
    ("cron", {"expression": "0 9 * * 1-5"}, ["2026-01-16T09:00Z", "2026-01-19T09:00Z"]),
    ("cron", {"expression": "*/20 * * * *"}, ["2026-01-15T10:20Z", "2026-01-15T10:40Z"]),
    ("cron", {"expression": "0  9   * * *"}, ["2026-01-16T09:00Z", "2026-01-17T09:00Z"]),
    ("cron", {"expression": "30 */10 * * * *"}, ["2026-01-15T10:10:30Z", "2026-01-15T10:20:30Z"]),
    ("cron", {"expression": "0 0 29 2 *"}, ["2028-02-29T00:00Z", "2032-02-29T00:00Z"]),
    ("cron", {"expression": "0 0 L * *"}, ["2026-01-31T00:00Z", "2026-02-28T00:00Z"]),
    ("cron", {"expression": "0 9 * * mon", "timezone": "Asia/Tokyo"}, ["2026-01-19T00:00Z"]),
    (
        "interval",
        {"seconds": 90, "start_date": "2026-01-15T10:00:00Z"},
        ["2026-01-15T10:07:30Z", "2026-01-15T10:09Z"],  # an occurrence at `now` counts
    ),
    (
        "interval",
        {"hours": 1, "minutes": 30, "seconds": 15, "start_date": "2026-01-15T09:00:00+00:00"},
        ["2026-01-15T10:30:15Z", "2026-01-15T12:00:30Z"],
    ),
    ("interval", {"minutes": 5}, ["2026-01-15T10:10Z", "2026-01-15T10:15Z"]),  # epoch-aligned
    ("once", {"run_at": "2026-12-01T10:00:00+00:00"}, ["2026-12-01T10:00Z"]),
    ("once", {"run_at": "2026-12-01T10:00:00", "timezone": "Europe/Berlin"}, ["2026-12-01T09:00Z"]),
    ("hourly", {"minute": 15}, ["2026-01-15T10:15Z", "2026-01-15T11:15Z"]),
    ("hourly", {}, ["2026-01-15T11:00Z", "2026-01-15T12:00Z"]),
    ("daily", {"hour": 2, "minute": 0}, ["2026-01-16T02:00Z", "2026-01-17T02:00Z"]),
    ("daily", {"hour": 10, "minute": 8}, ["2026-01-15T10:08Z", "2026-01-16T10:08Z"]),
    ("daily", {"hour": 2, "timezone": "America/New_York"}, ["2026-01-16T07:00Z"]),
    ("weekly", {"day": "monday", "hour": 2}, ["2026-01-19T02:00Z", "2026-01-26T02:00Z"]),
    ("weekly", {"day": "THU", "hour": 11}, ["2026-01-15T11:00Z", "2026-01-22T11:00Z"]),
    (
        "weekly",
        {"days": ["mon", "Thursday", "thu"], "hour": 2, "minute": 30},
        ["2026-01-19T02:30Z", "2026-01-22T02:30Z", "2026-01-26T02:30Z"],
    ),
    ("monthly", {"day": 1, "hour": 2}, ["2026-02-01T02:00Z", "2026-03-01T02:00Z"]),
    ("monthly", {"day": 31, "hour": 2}, ["2026-01-31T02:00Z", "2026-03-31T02:00Z"]),
    ("monthly", {"day": 30, "hour": 0}, ["2026-01-30T00:00Z", "2026-03-30T00:00Z"]),
    (
        "monthly",
        {"day": "last", "hour": 23, "minute": 59},
        ["2026-01-31T23:59Z", "2026-02-28T23:59Z"],
    ),
    ("monthly", {"day": "Last", "hour": 0}, ["2026-01-31T00:00Z"]),
    (
        "daily",
        {
            "hour": 3,
            "timezone": "UTC",
            "jitter": 0,
            "start_date": "2026-02-01",
            "end_date": "2026-02-03T03:00:00Z",
            "timeout_seconds": 12.5,
            "max_retries": 2,
            "misfire_grace_time": 0,
        },
        ["2026-02-01T03:00Z", "2026-02-02T03:00Z", "2026-02-03T03:00Z"],
    ),
]


@pytest.mark.parametrize(("frequency", "config", "expected"), VALID)
def test_valid_shapes_fire_when_expected(
    frequency: str, config: dict[str, object], expected: list[str]
) -> None:
    assert validate_schedule(frequency, config) == []
    spec = parse_schedule(frequency, config)
    assert spec.frequency == frequency
    times = fire_times(spec, None, NOW, len(expected) + 1)
    assert times[: len(expected)] == [_utc(text) for text in expected]


def test_every_frequency_has_a_valid_example() -> None:
    assert {row[0] for row in VALID} == set(FREQUENCIES)


ACCEPTED_DAILY = (
    "hour, minute, timezone, jitter, start_date, end_date, timeout_seconds, max_retries, "
    "misfire_grace_time, overlap_policy, max_buffered, expected_within"
)
ERRORS = [
    (
        "dayly",
        {"hour": 2},
        "unknown frequency 'dayly' (expected one of: "
        "cron, interval, once, hourly, daily, weekly, monthly)",
    ),
    ("Daily", {"hour": 2}, "unknown frequency 'Daily' (expected one of: "),
    (None, {}, "frequency must be a string, got None (NoneType)"),
    ("daily", {"hour": 25}, "time_config.hour must be an integer 0-23, got 25"),
    ("daily", {"hour": -1}, "time_config.hour must be an integer 0-23, got -1"),
    ("daily", {"hour": True}, "time_config.hour must be an integer 0-23, got True (bool)"),
    ("daily", {"hour": 2.0}, "time_config.hour must be an integer 0-23, got 2.0 (float)"),
    ("daily", {"hour": "2"}, "time_config.hour must be an integer 0-23, got '2' (str)"),
    ("daily", {"hour": 2, "minute": 60}, "time_config.minute must be an integer 0-59, got 60"),
    ("daily", {"minute": 5}, "time_config.hour is required for daily"),
    (
        "daily",
        {"hour": 2, "minutes": 5},
        f"time_config has unknown key 'minutes' for daily (accepted: {ACCEPTED_DAILY})",
    ),
    ("daily", {"hour": 2, "second": 5}, "time_config has unknown key 'second' for daily"),
    ("daily", [], "time_config must be a JSON object, got [] (list)"),
    ("daily", None, "time_config must be a JSON object, got None (NoneType)"),
    ("daily", '{"hour": 2}', "time_config must be a JSON object, got '{\"hour\": 2}' (str)"),
    (
        "daily",
        {"hour": 2, "timezone": "Mars/Base"},
        "time_config.timezone 'Mars/Base' is not an IANA time zone",
    ),
    (
        "daily",
        {"hour": 2, "timezone": "../../etc/passwd"},
        "time_config.timezone '../../etc/passwd' is not an IANA time zone",
    ),
    (
        "daily",
        {"hour": 2, "timezone": "/etc/localtime"},
        "time_config.timezone '/etc/localtime' is not an IANA time zone",
    ),
    (
        "daily",
        {"hour": 2, "timezone": "zone.tab"},
        "time_config.timezone 'zone.tab' is not an IANA time zone",
    ),
    (
        "daily",
        {"hour": 2, "timezone": "Europe"},
        "time_config.timezone 'Europe' is not an IANA time zone",
    ),
    ("daily", {"hour": 2, "timezone": 1}, "time_config.timezone must be a string, got 1"),
    (
        "cron",
        {"expression": "61 * * * *"},
        "cron expression '61 * * * *': minute 61 out of range 0-59",
    ),
    (
        "cron",
        {"expression": "0 24 * * *"},
        "cron expression '0 24 * * *': hour 24 out of range 0-23",
    ),
    (
        "cron",
        {"expression": "0 0 0 * *"},
        "cron expression '0 0 0 * *': day-of-month 0 out of range 1-31",
    ),
    (
        "cron",
        {"expression": "0 0 * 13 *"},
        "cron expression '0 0 * 13 *': month 13 out of range 1-12",
    ),
    (
        "cron",
        {"expression": "0 0 * * 1-8"},
        "cron expression '0 0 * * 1-8': day-of-week 8 out of range 0-7",
    ),
    (
        "cron",
        {"expression": "60 0 0 * * *"},
        "cron expression '60 0 0 * * *': second 60 out of range 0-59",
    ),
    ("cron", {"expression": "0 0 30 2 *"}, "cron expression '0 0 30 2 *' never fires"),
    ("cron", {"expression": "0 0 31 4,6,9 *"}, "cron expression '0 0 31 4,6,9 *' never fires"),
    (
        "cron",
        {"expression": "* * * *"},
        "cron expression '* * * *': expected 5, 6 or 7 fields, got 4",
    ),
    (
        "cron",
        {"expression": "0 0 1 1 * 2030"},
        # Six fields put seconds first, so a trailing year lands in day-of-week.
        "cron expression '0 0 1 1 * 2030': day-of-week 2030 out of range 0-7",
    ),
    (
        "cron",
        {"expression": "* * * * * * * *"},
        "cron expression '* * * * * * * *': expected 5, 6 or 7 fields, got 8",
    ),
    ("cron", {"expression": "x * * * *"}, "cron expression 'x * * * *': bad minute field 'x'"),
    (
        "cron",
        {"expression": "*/0 * * * *"},
        "cron expression '*/0 * * * *': bad minute field '*/0'",
    ),
    ("cron", {"expression": "R * * * *"}, "cron expression 'R * * * *': unsupported token 'R'"),
    ("cron", {"expression": "0 0 * * fun"}, "cron expression '0 0 * * fun': bad day-of-week field"),
    ("cron", {}, "time_config.expression is required for cron"),
    ("cron", {"expression": 5}, "time_config.expression must be a string, got 5"),
    ("interval", {}, "time_config.seconds, minutes or hours is required for interval"),
    (
        "interval",
        {"seconds": 0},
        "interval must be 1-315360000 seconds in total (seconds + minutes + hours), got 0",
    ),
    ("interval", {"seconds": -5}, "time_config.seconds must be an integer 0-315360000, got -5"),
    ("interval", {"minutes": 1.5}, "time_config.minutes must be an integer 0-5256000, got 1.5"),
    ("interval", {"hours": False}, "time_config.hours must be an integer 0-87600, got False"),
    ("interval", {"seconds": 5, "days": 1}, "time_config has unknown key 'days' for interval"),
    ("once", {}, "time_config.run_at is required for once"),
    (
        "once",
        {"run_at": "tomorrow"},
        "time_config.run_at must be an ISO 8601 date-time, got 'tomorrow' (str)",
    ),
    (
        "once",
        {"run_at": 1767225600},
        "time_config.run_at must be an ISO 8601 date-time, got 1767225600",
    ),
    ("hourly", {"minute": 60}, "time_config.minute must be an integer 0-59, got 60"),
    ("hourly", {"hour": 1}, "time_config has unknown key 'hour' for hourly"),
    ("weekly", {"hour": 2}, "time_config.day or time_config.days is required for weekly"),
    (
        "weekly",
        {"day": "funday", "hour": 2},
        "time_config.day must be a day name (monday-sunday or mon-sun, any case), "
        "got 'funday' (str)",
    ),
    ("weekly", {"day": 1, "hour": 2}, "time_config.day must be a day name"),
    ("weekly", {"days": [], "hour": 2}, "time_config.days must be a non-empty list of day names"),
    (
        "weekly",
        {"days": "mon", "hour": 2},
        "time_config.days must be a non-empty list of day names",
    ),
    ("weekly", {"days": ["mon", "x"], "hour": 2}, "time_config.days[1] must be a day name"),
    (
        "weekly",
        {"day": "mon", "days": ["tue"], "hour": 2},
        "time_config takes day or days for weekly, not both",
    ),
    ("monthly", {"hour": 2}, "time_config.day is required for monthly"),
    ("monthly", {"day": 0, "hour": 2}, "time_config.day must be an integer 1-31 or 'last', got 0"),
    (
        "monthly",
        {"day": 32, "hour": 2},
        "time_config.day must be an integer 1-31 or 'last', got 32",
    ),
    ("monthly", {"day": "first", "hour": 2}, "time_config.day must be an integer 1-31 or 'last'"),
    ("daily", {"hour": 2, "jitter": -1}, "time_config.jitter must be an integer 0-86400, got -1"),
    ("daily", {"hour": 2, "jitter": 86401}, "time_config.jitter must be an integer 0-86400"),
    ("daily", {"hour": 2, "jitter": 1.5}, "time_config.jitter must be an integer 0-86400, got 1.5"),
    ("daily", {"hour": 2, "max_retries": -1}, "time_config.max_retries must be an integer 0-100"),
    ("daily", {"hour": 2, "max_retries": True}, "time_config.max_retries must be an integer 0-100"),
    (
        "daily",
        {"hour": 2, "timeout_seconds": 0},
        "time_config.timeout_seconds must be a number > 0 and <= 2678400",
    ),
    (
        "daily",
        {"hour": 2, "timeout_seconds": float("inf")},
        "time_config.timeout_seconds must be a number > 0 and <= 2678400, got inf (float)",
    ),
    (
        "daily",
        {"hour": 2, "timeout_seconds": 1e12},
        "time_config.timeout_seconds must be a number > 0 and <= 2678400, got 1000000000000.0",
    ),
    (
        "daily",
        {"hour": 2, "misfire_grace_time": 1e11},
        "time_config.misfire_grace_time must be a number >= 0 and <= 31622400, got 100000000000.0",
    ),
    (
        "daily",
        {"hour": 2, "misfire_grace_time": -1},
        "time_config.misfire_grace_time must be a number >= 0 and <= 31622400, got -1",
    ),
    (
        "daily",
        {"hour": 2, "misfire_grace_time": "5"},
        "time_config.misfire_grace_time must be a number >= 0 and <= 31622400, got '5' (str)",
    ),
    (
        "daily",
        {"hour": 2, "start_date": "2026-13-01"},
        "time_config.start_date must be an ISO 8601 date-time, got '2026-13-01' (str)",
    ),
    (
        "daily",
        {"hour": 2, "end_date": ["2026"]},
        "time_config.end_date must be an ISO 8601 date-time, got ['2026'] (list)",
    ),
    (
        "daily",
        {"hour": 2, "start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01"},
        "time_config.end_date '2026-01-01' must be after time_config.start_date "
        "'2026-02-01T00:00:00Z'",
    ),
    (
        "daily",
        {"hour": 2, "start_date": "2026-02-01T01:00:00+01:00", "end_date": "2026-02-01T00:00:00Z"},
        "time_config.end_date '2026-02-01T00:00:00Z' must be after time_config.start_date",
    ),
]


@pytest.mark.parametrize(("frequency", "config", "expected"), ERRORS)
def test_errors_say_exactly_what_is_wrong(frequency: object, config: object, expected: str) -> None:
    problems = validate_schedule(frequency, config)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)
    with pytest.raises(InvalidScheduleError) as info:
        parse_schedule(frequency, config)
    assert info.value.reason == problems[0]


def test_every_problem_is_reported_at_once() -> None:
    config = {"hour": 24, "minute": -1, "timezone": "Mars/Base", "jitter": "x", "typo": 1}
    problems = validate_schedule("daily", config)
    assert problems == [
        f"time_config has unknown key 'typo' for daily (accepted: {ACCEPTED_DAILY})",
        "time_config.timezone 'Mars/Base' is not an IANA time zone",
        "time_config.jitter must be an integer 0-86400, got 'x' (str)",
        "time_config.hour must be an integer 0-23, got 24",
        "time_config.minute must be an integer 0-59, got -1",
    ]
    with pytest.raises(InvalidScheduleError) as info:
        parse_schedule("daily", config)
    assert info.value.reason == "; ".join(problems)


def test_unknown_frequency_still_checks_the_common_options() -> None:
    assert validate_schedule("dayly", {"hour": 2, "jitter": -1}) == [
        "unknown frequency 'dayly' (expected one of: "
        "cron, interval, once, hourly, daily, weekly, monthly)",
        "time_config.jitter must be an integer 0-86400, got -1",
    ]


def test_null_is_absent_and_a_null_required_key_is_missing() -> None:
    optional = {"timezone": None, "jitter": None, "start_date": None, "max_retries": None}
    spec = parse_schedule("daily", {"hour": 2, **optional}, default_timezone="Asia/Tokyo")
    assert (spec.timezone.key, spec.jitter, spec.start_date, spec.max_retries) == (
        "Asia/Tokyo",
        0,
        None,
        None,
    )
    assert validate_schedule("daily", {"hour": None}) == ["time_config.hour is required for daily"]
    assert validate_schedule("cron", {"expression": None}) == [
        "time_config.expression is required for cron"
    ]
    assert validate_schedule("once", {"run_at": None}) == [
        "time_config.run_at is required for once"
    ]


def test_default_timezone_applies_and_is_checked() -> None:
    spec = parse_schedule("daily", {"hour": 2}, default_timezone="Europe/Berlin")
    assert spec.timezone.key == "Europe/Berlin"
    spec = parse_schedule("daily", {"hour": 2, "timezone": "UTC"}, default_timezone="Asia/Tokyo")
    assert spec.timezone.key == "UTC"
    assert validate_schedule("daily", {"hour": 2}, default_timezone="Nowhere/Land") == [
        "default timezone 'Nowhere/Land' is not an IANA time zone"
    ]


def test_spec_fields() -> None:
    created = datetime(2026, 1, 1, 12, 0, 5, 700_000, tzinfo=UTC)
    spec = parse_schedule(
        "interval",
        {
            "minutes": 10,
            "jitter": 30,
            "timeout_seconds": 5,
            "max_retries": 3,
            "misfire_grace_time": 60,
            "end_date": "2026-06-01T00:00:00.9+02:00",
        },
        schedule_id=12345,
        created_at=created,
    )
    assert spec.schedule_id == "12345" and spec.jitter == 30
    assert (spec.timeout_seconds, spec.max_retries, spec.misfire_grace_time) == (5.0, 3, 60.0)
    assert spec.anchor == datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert spec.period == timedelta(minutes=10)
    assert spec.start_date is None
    assert spec.end_date == datetime(2026, 5, 31, 22, 0, 0, tzinfo=UTC)  # rounded down
    assert spec.misfire_grace_time == 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.jitter = 1  # type: ignore[misc]


def test_start_date_is_the_interval_anchor_and_is_rounded_up() -> None:
    spec = parse_schedule(
        "interval",
        {"seconds": 10, "start_date": "2026-03-29T02:30:00.25", "timezone": "Europe/Berlin"},
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    # 02:30 does not exist in Berlin that day: the first instant after the gap, 03:00 CEST.
    assert spec.start_date == spec.anchor == datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC)


def test_naive_created_at_is_utc_and_none_leaves_no_anchor() -> None:
    spec = parse_schedule("interval", {"seconds": 10}, created_at=datetime(2026, 1, 1, 0, 0, 1))
    assert spec.anchor == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert parse_schedule("interval", {"seconds": 10}).anchor is None
    assert parse_schedule("daily", {"hour": 1}, schedule_id=None).schedule_id == ""


def test_naive_once_is_a_wall_time_and_the_first_of_a_repeat() -> None:
    config = {"run_at": "2026-10-25T02:30:00", "timezone": "Europe/Berlin"}
    assert parse_schedule("once", config).run_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_specs_compare_by_value() -> None:
    a = parse_schedule("cron", {"expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"})
    b = parse_schedule("cron", {"expression": "0  9 * * 1-5", "timezone": "Europe/Berlin"})
    assert a == b and isinstance(a, ScheduleSpec) and hash(a) == hash(b)


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True),
    st.sampled_from(["", "mon", "last", "UTC", "Europe/Berlin", "0 9 * * *", "2026-01-01T00:00"]),
    st.text(max_size=8),
    st.lists(st.sampled_from(["mon", "x", 1]), max_size=3),
)
ANY_KEY = st.sampled_from(
    sorted({*COMMON_KEYS, *(k for keys in SHAPE_KEYS.values() for k in keys)})
)


@settings(max_examples=150, deadline=None)
@given(
    frequency=st.one_of(st.sampled_from(FREQUENCIES), st.none(), st.text(max_size=5)),
    config=st.dictionaries(ANY_KEY, ANY_VALUE, max_size=6),
)
def test_any_input_either_parses_or_says_why(frequency: object, config: dict[str, object]) -> None:
    problems = validate_schedule(frequency, config)
    if problems:
        assert all(problems)
        with pytest.raises(InvalidScheduleError) as info:
            parse_schedule(frequency, config)
        assert info.value.reason == "; ".join(problems)
    else:
        assert parse_schedule(frequency, config).frequency == frequency


def test_jitter_must_be_shorter_than_the_interval() -> None:
    assert validate_schedule("interval", {"seconds": 10, "jitter": 10}) == [
        "time_config.jitter must be less than the interval (10 s), got 10"
    ]
    assert validate_schedule("interval", {"seconds": 10, "jitter": 9}) == []
