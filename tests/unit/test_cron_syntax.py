"""The cron syntax people paste in (DESIGN.md "Cron syntax"): macros, the Quartz 7-field form with
a year, H, LW, L-n and nL, against instants worked out by hand, DST days included.

Calendar facts used (2026): Jan 1 is a Thursday; the last weekdays are Fri Jan 30, Fri Feb 27,
Tue Mar 31, Thu Apr 30, Fri May 29; the last Fridays Jan 30, Feb 27, Mar 27, Apr 24, Oct 30,
Nov 27; the last Saturdays Jan 31, Feb 28, Mar 28 (and Dec 30 in 2028); the last Sundays of March
and October, Mar 29 and Oct 25, are Berlin's DST days; New York's are Sun Mar 8 and Sun Nov 1.

H draws (sha256 of "<id>|<field>", first 8 bytes big-endian, modulo the number of choices),
worked out once by hand and pinned here, since changing them would move every schedule:
  alpha  minute 8 (H/15: 8, H(0-29): 8)   hour 4 (H(8-17): 8, H/2: 0)   second 9
  beta   minute 18 (H/15: 3, H(0-29): 18) hour 15 (H(8-17): 11, H/2: 1) second 14
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.errors import InvalidScheduleError
from services.model.fire_times import fire_times, next_fire_time
from services.model.spec import parse_schedule, validate_schedule

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
NOW = datetime(2026, 1, 15, 10, 7, 30, tzinfo=UTC)  # a Thursday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fires(
    expression: str, start: datetime, count: int, zone: str = "UTC", schedule_id: str = ""
) -> list[datetime]:
    config = {"expression": expression, "timezone": zone}
    assert validate_schedule("cron", config) == []
    spec = parse_schedule("cron", config, schedule_id=schedule_id)
    return fire_times(spec, None, start, count)


def fires_on(expression: str, zone: str, day: date, schedule_id: str = "") -> list[datetime]:
    """Every fire time whose local date in `zone` is `day`."""
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(zone))
    return [
        fire
        for fire in fires(expression, start, 80, zone, schedule_id)
        if fire.astimezone(ZoneInfo(zone)).date() == day
    ]


# -- macros ---------------------------------------------------------------------------------------

MACROS = [
    ("@yearly", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
    ("@annually", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
    ("@monthly", ["2026-02-01T00:00Z", "2026-03-01T00:00Z"]),
    ("@weekly", ["2026-01-18T00:00Z", "2026-01-25T00:00Z"]),  # Sundays
    ("@daily", ["2026-01-16T00:00Z", "2026-01-17T00:00Z"]),
    ("@midnight", ["2026-01-16T00:00Z", "2026-01-17T00:00Z"]),
    ("@hourly", ["2026-01-15T11:00Z", "2026-01-15T12:00Z"]),
    ("@Daily", ["2026-01-16T00:00Z", "2026-01-17T00:00Z"]),
    ("  @HOURLY ", ["2026-01-15T11:00Z", "2026-01-15T12:00Z"]),
]


@pytest.mark.parametrize(("macro", "expected"), MACROS)
def test_macros_mean_what_cron_means(macro: str, expected: list[str]) -> None:
    assert fires(macro, NOW, 2) == [at(text) for text in expected]


def test_macros_are_never_hashed() -> None:
    assert fires("@daily", NOW, 3, schedule_id="alpha") == fires("@daily", NOW, 3, schedule_id="b")


@pytest.mark.parametrize(
    ("zone", "day", "count", "first"),
    [
        (BERLIN, date(2026, 3, 29), 23, ["00:00+01:00", "01:00+01:00", "03:00+02:00"]),
        (BERLIN, date(2026, 10, 25), 25, ["00:00+02:00", "01:00+02:00", "02:00+02:00"]),
        (NEW_YORK, date(2026, 3, 8), 23, ["00:00-05:00", "01:00-05:00", "03:00-04:00"]),
        (NEW_YORK, date(2026, 11, 1), 25, ["00:00-04:00", "01:00-04:00", "01:00-05:00"]),
    ],
)
def test_hourly_macro_fires_every_real_hour_on_dst_days(
    zone: str, day: date, count: int, first: list[str]
) -> None:
    day_fires = fires_on("@hourly", zone, day)
    assert len(day_fires) == count
    assert day_fires[:3] == [at(f"{day.isoformat()}T{text}") for text in first]


@pytest.mark.parametrize(
    ("macro", "zone", "day", "expected"),
    [
        ("@daily", BERLIN, date(2026, 3, 29), "2026-03-29T00:00+01:00"),
        ("@daily", BERLIN, date(2026, 3, 30), "2026-03-30T00:00+02:00"),
        ("@midnight", BERLIN, date(2026, 10, 25), "2026-10-25T00:00+02:00"),
        ("@daily", BERLIN, date(2026, 10, 26), "2026-10-26T00:00+01:00"),
        ("@weekly", NEW_YORK, date(2026, 3, 8), "2026-03-08T00:00-05:00"),
        ("@weekly", NEW_YORK, date(2026, 3, 15), "2026-03-15T00:00-04:00"),
        ("@daily", NEW_YORK, date(2026, 11, 1), "2026-11-01T00:00-04:00"),
        ("@daily", NEW_YORK, date(2026, 11, 2), "2026-11-02T00:00-05:00"),
    ],
)
def test_daily_macros_fire_once_at_local_midnight_around_dst(
    macro: str, zone: str, day: date, expected: str
) -> None:
    assert fires_on(macro, zone, day) == [at(expected)]


def test_monthly_macro_follows_the_local_offset() -> None:
    start = datetime(2026, 2, 15, tzinfo=UTC)
    assert fires("@monthly", start, 2, BERLIN) == [
        at("2026-03-01T00:00+01:00"),
        at("2026-04-01T00:00+02:00"),
    ]


# -- the Quartz 7-field form with a year ----------------------------------------------------------


def test_a_year_restricts_the_fire_times() -> None:
    assert fires("0 0 12 * * ? 2027", NOW, 2) == [at("2027-01-01T12:00Z"), at("2027-01-02T12:00Z")]
    last_day = datetime(2027, 12, 31, tzinfo=UTC)
    assert fires("0 0 12 * * ? 2027", last_day, 5) == [at("2027-12-31T12:00Z")]
    assert fires("0 0 0 1 1 ? 2027,2029", NOW, 5) == [
        at("2027-01-01T00:00Z"),
        at("2029-01-01T00:00Z"),
    ]
    assert fires("0 0 0 1 1 ? 2026/4", NOW, 2) == [at("2030-01-01T00:00Z"), at("2034-01-01T00:00Z")]
    assert fires("0 0 12 * * * 2099", NOW, 1) == [at("2099-01-01T12:00Z")]  # 73 years away


def test_quartz_last_weekday_with_years_uses_cron_day_numbers() -> None:
    # 6L is the last Saturday (cron's 6), not Quartz's last Friday.
    assert fires("0 15 10 ? * 6L 2026-2028", NOW, 3) == [
        at("2026-01-31T10:15Z"),
        at("2026-02-28T10:15Z"),
        at("2026-03-28T10:15Z"),
    ]
    assert fires("0 15 10 ? * 6L 2026-2028", datetime(2028, 12, 1, tzinfo=UTC), 5) == [
        at("2028-12-30T10:15Z")
    ]
    assert fires("0 15 10 ? * 5L 2026-2028", NOW, 2) == [
        at("2026-01-30T10:15Z"),
        at("2026-02-27T10:15Z"),
    ]


def test_no_year_left_means_no_next_fire_time_like_a_past_once() -> None:
    assert validate_schedule("cron", {"expression": "0 0 12 * * ? 2020"}) == []
    spec = parse_schedule("cron", {"expression": "0 0 12 * * ? 2020"})
    assert next_fire_time(spec, None, NOW) is None
    spec = parse_schedule("cron", {"expression": "0 30 2 * * ? 2026", "timezone": BERLIN})
    assert next_fire_time(spec, None, datetime(2027, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("expression", "zone", "day", "expected"),
    [
        ("0 30 2 * * ? 2026", BERLIN, date(2026, 3, 29), ["2026-03-29T03:00+02:00"]),  # the gap
        ("0 30 2 * * ? 2026", BERLIN, date(2026, 10, 25), ["2026-10-25T02:30+02:00"]),  # once
        ("0 30 2 * * ? 2026", NEW_YORK, date(2026, 3, 8), ["2026-03-08T03:00-04:00"]),
        ("0 30 1 * * ? 2026", NEW_YORK, date(2026, 11, 1), ["2026-11-01T01:30-04:00"]),
        ("0 30 2 ? * 7L 2026", BERLIN, date(2026, 10, 25), ["2026-10-25T02:30+02:00"]),
    ],
)
def test_year_form_on_dst_days(expression: str, zone: str, day: date, expected: list[str]) -> None:
    assert fires_on(expression, zone, day) == [at(text) for text in expected]


def test_year_form_over_every_hour_fires_every_real_hour() -> None:
    assert len(fires_on("0 30 * * * ? 2026", BERLIN, date(2026, 10, 25))) == 25
    assert len(fires_on("0 30 * * * ? 2026", NEW_YORK, date(2026, 3, 8))) == 23


# -- LW, L-n, nL ----------------------------------------------------------------------------------


def test_lw_is_the_last_weekday_of_the_month() -> None:
    assert fires("0 0 LW * *", datetime(2026, 1, 1, tzinfo=UTC), 5) == [
        at("2026-01-30T00:00Z"),  # the 31st is a Saturday
        at("2026-02-27T00:00Z"),  # the 28th is a Saturday
        at("2026-03-31T00:00Z"),
        at("2026-04-30T00:00Z"),
        at("2026-05-29T00:00Z"),  # the 31st is a Sunday
    ]
    assert fires("0 0 9 lw * ?", datetime(2026, 1, 1, tzinfo=UTC), 1) == [at("2026-01-30T09:00Z")]


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (BERLIN, ["2026-02-27T02:30+01:00", "2026-03-31T02:30+02:00"]),
        (NEW_YORK, ["2026-02-27T02:30-05:00", "2026-03-31T02:30-04:00"]),
    ],
)
def test_lw_across_spring_forward(zone: str, expected: list[str]) -> None:
    assert fires("30 2 LW * *", datetime(2026, 2, 1, tzinfo=UTC), 2, zone) == [
        at(text) for text in expected
    ]


def test_lw_across_fall_back_in_new_york() -> None:
    assert fires("30 2 LW * *", datetime(2026, 10, 1, tzinfo=UTC), 2, NEW_YORK) == [
        at("2026-10-30T02:30-04:00"),
        at("2026-11-30T02:30-05:00"),
    ]


def test_l_minus_n_counts_back_from_the_last_day() -> None:
    assert fires("0 0 L-2 * *", datetime(2026, 1, 1, tzinfo=UTC), 3) == [
        at("2026-01-29T00:00Z"),
        at("2026-02-26T00:00Z"),
        at("2026-03-29T00:00Z"),
    ]
    assert fires("0 0 L-2 2 *", datetime(2027, 3, 1, tzinfo=UTC), 1) == [at("2028-02-27T00:00Z")]
    assert fires("0 0 L-0 * *", datetime(2026, 1, 1, tzinfo=UTC), 1) == [at("2026-01-31T00:00Z")]
    # The 31-day months only: January, March, May, July, August, October, December.
    assert [f.month for f in fires("0 0 L-30 * *", datetime(2026, 1, 1, tzinfo=UTC), 7)] == [
        1,
        3,
        5,
        7,
        8,
        10,
        12,
    ]


@pytest.mark.parametrize(
    ("expression", "zone", "day", "expected"),
    [
        ("30 2 L-2 * *", BERLIN, date(2026, 3, 29), ["2026-03-29T03:00+02:00"]),  # the gap
        ("30 2 L-6 10 *", BERLIN, date(2026, 10, 25), ["2026-10-25T02:30+02:00"]),  # once
        ("30 2 L-23 3 *", NEW_YORK, date(2026, 3, 8), ["2026-03-08T03:00-04:00"]),
        ("30 1 L-29 11 *", NEW_YORK, date(2026, 11, 1), ["2026-11-01T01:30-04:00"]),
    ],
)
def test_l_minus_n_on_dst_days(expression: str, zone: str, day: date, expected: list[str]) -> None:
    assert fires_on(expression, zone, day) == [at(text) for text in expected]


def test_n_l_is_the_last_such_weekday_in_cron_numbers() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    last_fridays = [at(f"2026-0{m}T00:00Z") for m in ("1-30", "2-27", "3-27", "4-24")]
    assert fires("0 0 * * 5L", start, 4) == last_fridays
    assert fires("0 0 * * FRIL", start, 4) == last_fridays
    assert fires("0 0 * * L5", start, 4) == last_fridays  # croniter's own spelling
    assert fires("0 0 ? * 5l", start, 4) == last_fridays
    assert (
        fires("0 0 * * 0L", start, 1) == fires("0 0 * * 7L", start, 1) == [at("2026-01-25T00:00Z")]
    )


@pytest.mark.parametrize(
    ("expression", "zone", "day", "expected"),
    [
        ("30 2 * * 0L", BERLIN, date(2026, 3, 29), ["2026-03-29T03:00+02:00"]),  # last Sunday
        ("30 2 * * 7L", BERLIN, date(2026, 10, 25), ["2026-10-25T02:30+02:00"]),
        ("30 2 * * SUNL", BERLIN, date(2026, 10, 25), ["2026-10-25T02:30+02:00"]),
        ("30 2 * * 5L", BERLIN, date(2026, 3, 27), ["2026-03-27T02:30+01:00"]),
        ("30 2 * * 5L", BERLIN, date(2026, 4, 24), ["2026-04-24T02:30+02:00"]),
        ("30 2 * * 5L", NEW_YORK, date(2026, 10, 30), ["2026-10-30T02:30-04:00"]),
        ("30 2 * * 5L", NEW_YORK, date(2026, 11, 27), ["2026-11-27T02:30-05:00"]),
    ],
)
def test_n_l_around_dst(expression: str, zone: str, day: date, expected: list[str]) -> None:
    assert fires_on(expression, zone, day) == [at(text) for text in expected]


def test_n_l_over_every_hour_fires_every_real_hour() -> None:
    assert len(fires_on("0 * * * 0L", BERLIN, date(2026, 10, 25))) == 25
    assert len(fires_on("0 * * * 0L", BERLIN, date(2026, 3, 29))) == 23


# -- H --------------------------------------------------------------------------------------------


def test_h_draws_the_pinned_values() -> None:
    start = datetime(2026, 1, 15, tzinfo=UTC)  # a Thursday
    assert fires("H 2 * * *", start, 2, schedule_id="alpha") == [
        at("2026-01-15T02:08Z"),
        at("2026-01-16T02:08Z"),
    ]
    assert fires("H 2 * * *", start, 1, schedule_id="beta") == [at("2026-01-15T02:18Z")]
    assert fires("H/15 * * * *", start, 5, schedule_id="beta") == [
        at("2026-01-15T00:03Z"),
        at("2026-01-15T00:18Z"),
        at("2026-01-15T00:33Z"),
        at("2026-01-15T00:48Z"),
        at("2026-01-15T01:03Z"),
    ]
    assert fires("H(0-29) * * * *", start, 1, schedule_id="beta") == [at("2026-01-15T00:18Z")]
    assert fires("H H(8-17) * * 1-5", start, 3, schedule_id="beta") == [
        at("2026-01-15T11:18Z"),
        at("2026-01-16T11:18Z"),
        at("2026-01-19T11:18Z"),  # Monday
    ]
    assert fires("H H * * * *", start, 1, schedule_id="alpha") == [at("2026-01-15T00:08:09Z")]
    assert fires("H 0 12 * * ? 2026", start, 1, schedule_id="beta") == [at("2026-01-15T12:00:14Z")]


def _reference_draw(schedule_id: str, field: str, choices: int) -> int:
    """The documented formula, written again here."""
    digest = sha256(f"{schedule_id}|{field}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % choices


def test_h_spreads_schedules_over_the_range() -> None:
    start = datetime(2026, 1, 15, tzinfo=UTC)
    ids = [f"0b6c1b9e-{n:04d}" for n in range(600)]
    minutes = [fires("H * * * *", start, 1, schedule_id=i)[0].minute for i in ids]
    assert minutes == [_reference_draw(i, "minute", 60) for i in ids]
    assert set(minutes) == set(range(60)) and max(map(minutes.count, set(minutes))) < 25
    offsets = {fires("H/15 * * * *", start, 1, schedule_id=i)[0].minute for i in ids[:200]}
    assert offsets == set(range(15))
    halves = {fires("H(0-29) * * * *", start, 1, schedule_id=i)[0].minute for i in ids[:200]}
    assert halves == set(range(30))
    days = {fires("0 0 H * *", start, 1, schedule_id=i)[0].day for i in ids[:300]}
    assert days == set(range(1, 29))  # days every month has


def test_h_in_a_dst_gap_fires_at_the_end_of_the_gap_whatever_the_minute() -> None:
    for schedule_id in ("alpha", "beta", "gamma"):
        assert fires_on("H 2 * * *", BERLIN, date(2026, 3, 29), schedule_id) == [
            at("2026-03-29T03:00+02:00")
        ]
        assert fires_on("H 2 * * *", NEW_YORK, date(2026, 3, 8), schedule_id) == [
            at("2026-03-08T03:00-04:00")
        ]


def test_h_in_a_repeated_hour_fires_once() -> None:
    assert fires_on("H 2 * * *", BERLIN, date(2026, 10, 25), "alpha") == [
        at("2026-10-25T02:08+02:00")
    ]
    assert fires_on("H 1 * * *", NEW_YORK, date(2026, 11, 1), "beta") == [
        at("2026-11-01T01:18-04:00")
    ]


def test_h_over_every_hour_fires_every_real_hour() -> None:
    assert len(fires_on("H * * * *", BERLIN, date(2026, 10, 25), "alpha")) == 25
    assert len(fires_on("H * * * *", NEW_YORK, date(2026, 3, 8), "alpha")) == 23
    # H/2 in the hour field is */2 with a drawn phase: alpha's is 0, so 02:00 fires twice.
    fall = fires_on("0 H/2 * * *", BERLIN, date(2026, 10, 25), "alpha")
    assert len(fall) == 13 and fall[1:3] == [
        at("2026-10-25T02:00+02:00"),
        at("2026-10-25T02:00+01:00"),
    ]
    assert len(fires_on("0 H/2 * * *", BERLIN, date(2026, 10, 25), "beta")) == 12


def test_two_rows_with_the_same_h_text_get_their_own_fire_times_through_the_cache() -> None:
    config = {"expression": "H 2 * * *", "timezone": BERLIN}
    text = json.dumps(config)
    a = parse_schedule("cron", config, schedule_id="alpha", config_json=text)
    b = parse_schedule("cron", config, schedule_id="beta", config_json=text)
    again = parse_schedule("cron", dict(config), schedule_id="alpha")  # the cache, keyed by JSON
    start = datetime(2026, 1, 15, tzinfo=UTC)
    assert next_fire_time(a, None, start) == at("2026-01-15T02:08+01:00")
    assert next_fire_time(b, None, start) == at("2026-01-15T02:18+01:00")
    assert a == again and a != b
    assert a.rule is again.rule  # rows that draw the same values share one rule


@pytest.mark.parametrize(
    "expression",
    [
        "H 2 * * *",
        "H/15 * * * *",
        "H(0-29) * * * *",
        "H H(8-17) * * 1-5",
        "h h h h *",
        "H(0-29)/10 H * * * *",
        "0 0 0 1 1 ? H(2027-2030)",
        "0 0 0 1 1 ? H/4",
        "0 0 9 ? * H",
    ],
)
def test_validation_accepts_h_and_every_id_can_fire(expression: str) -> None:
    assert validate_schedule("cron", {"expression": expression}) == []
    for n in range(20):
        spec = parse_schedule("cron", {"expression": expression}, schedule_id=f"id-{n}")
        assert next_fire_time(spec, None, NOW) is not None


SCRIPT = """
import json, sys
from datetime import datetime
from services.model.spec import parse_schedule
from services.errors import InvalidScheduleError
from services.model.fire_times import fire_times
now = datetime.fromisoformat("2026-03-28T20:00:00+00:00")
out = {}
for expression in json.loads(sys.argv[1]):
    for schedule_id in ("alpha", "beta", "6f1c2a4e-0000-4000-8000-000000000001"):
        config = {"expression": expression, "timezone": "Europe/Berlin"}
        spec = parse_schedule("cron", config, schedule_id=schedule_id)
        out[f"{expression}|{schedule_id}"] = [t.isoformat() for t in fire_times(spec, None, now, 6)]
print(json.dumps({"hash": hash("salted?"), "fires": out}))
"""
H_EXPRESSIONS = ["H 2 * * *", "H/15 * * * *", "H H(8-17) * * 1-5", "H H H H *", "H * * * * *"]


def _run(seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(H_EXPRESSIONS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_h_is_the_same_in_every_process() -> None:
    first, second = _run("1"), _run("2")
    assert first["hash"] != second["hash"]  # the processes really differ in str hashing
    assert first["fires"] == second["fires"]
    fires_there = first["fires"]
    assert isinstance(fires_there, dict) and len(fires_there) == 3 * len(H_EXPRESSIONS)
    now = datetime.fromisoformat("2026-03-28T20:00:00+00:00")
    for key, times in fires_there.items():
        expression, schedule_id = key.split("|")
        here = fires(expression, now, 6, BERLIN, schedule_id)
        assert times == [t.isoformat() for t in here]


# -- what is still refused ------------------------------------------------------------------------

REFUSED = [
    ("0 0 * * * * * *", "cron expression '0 0 * * * * * *': expected 5, 6 or 7 fields, got 8"),
    ("0 0 * *", "cron expression '0 0 * *': expected 5, 6 or 7 fields, got 4"),
    (
        "0 0 * * 1,Z3",
        "cron expression '0 0 * * 1,Z3': unsupported token 'Z3' in the day-of-week field",
    ),
    ("0 0 * * Z3", "cron expression '0 0 * * Z3': bad day-of-week field 'Z3'"),
    ("@reboot", "cron expression '@reboot': unknown macro '@reboot' (accepted: @yearly, "),
    ("R * * * *", "cron expression 'R * * * *': unsupported token 'R' in the minute field"),
    ("0 R(0-5) * * *", "cron expression '0 R(0-5) * * *': unsupported token 'R(0-5)' in the hour"),
    ("Hx * * * *", "cron expression 'Hx * * * *': unsupported token 'Hx' in the minute field"),
    ("0 0 * * H#3", "cron expression '0 0 * * H#3': unsupported token 'H#3' in the day-of-week"),
    ("H/0 * * * *", "cron expression 'H/0 * * * *': unsupported token 'H/0' in the minute field"),
    ("H(30-10) * * * *", "cron expression 'H(30-10) * * * *': unsupported token 'H(30-10)'"),
    ("H(0-99) * * * *", "cron expression 'H(0-99) * * * *': minute 99 out of range 0-59"),
    ("0 0 12 * * ? H", "cron expression '0 0 12 * * ? H': unsupported token 'H' in the year field"),
    ("0 0 12 * * ? 2100", "cron expression '0 0 12 * * ? 2100': year 2100 out of range 1970-2099"),
    ("0 0 12 * * ? 1969", "cron expression '0 0 12 * * ? 1969': year 1969 out of range 1970-2099"),
    ("0 0 12 * * 2027 ?", "cron expression '0 0 12 * * 2027 ?': day-of-week 2027 out of range 0-7"),
    ("0 0 12 * * * ?", "cron expression '0 0 12 * * * ?': bad year field '?'"),
    ("0 0 * * L", "cron expression '0 0 * * L': unsupported token 'L' in the day-of-week field"),
    ("0 0 * * 9L", "cron expression '0 0 * * 9L': day-of-week 9 out of range 0-7"),
    ("0 0 * * janL", "cron expression '0 0 * * janL': unsupported token 'janL' in the day-of-week"),
    ("0 0 1,LW * *", "cron expression '0 0 1,LW * *': unsupported token 'LW' in the day-of-month"),
    (
        "0 0 L-31 * *",
        "cron expression '0 0 L-31 * *': unsupported token 'L-31' in the day-of-month",
    ),
    ("0 0 L-3W * *", "cron expression '0 0 L-3W * *': bad day-of-month field 'L-3W'"),
    (
        "0 0 LW * 1",
        "cron expression '0 0 LW * 1': 'LW' in the day-of-month field needs '*' or '?' in the "
        "day-of-week field, got '1'",
    ),
    ("0 0 5L * *", "cron expression '0 0 5L * *': bad day-of-month field '5L'"),
    (
        "0 0 * * 1,5L",
        "cron expression '0 0 * * 1,5L': bad day-of-week field '1,5L' (these values cannot be "
        "combined)",
    ),
    ("? 0 * * *", "cron expression '? 0 * * *': bad minute field '?'"),
    ("0 0 0 30 2 ? 2026-2030", "cron expression '0 0 0 30 2 ? 2026-2030' never fires"),
    ("0 0 L-30 2 *", "cron expression '0 0 L-30 2 *' never fires"),
    (
        "0 0 H(29-31) 2 *",
        "cron expression '0 0 H(29-31) 2 *' never fires when H draws day-of-month 30",
    ),
    ("0 0 31 H *", "cron expression '0 0 31 H *' never fires when H draws month 2"),
    (
        "0 0 0 H H * H(1970-2099)",
        "cron expression '0 0 0 H H * H(1970-2099)': H could draw 1560 different dates",
    ),
]


@pytest.mark.parametrize(("expression", "expected"), REFUSED)
def test_refused_syntax_names_what_is_wrong(expression: str, expected: str) -> None:
    problems = validate_schedule("cron", {"expression": expression})
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    with pytest.raises(InvalidScheduleError) as refused:
        parse_schedule("cron", {"expression": expression}, schedule_id="alpha")
    assert str(refused.value.reason) == problems[0]  # the loader's reason is validation's
