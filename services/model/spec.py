"""Parsing and validation of a schedule's (frequency, time_config) into a frozen ScheduleSpec.

Shapes (contract, DESIGN.md "frequency and time_config"); keys outside them are errors:

    cron      {"expression": "0 9 * * 1-5"}  5 fields, or 6 with seconds first (Quartz, Spring)
    interval  {"seconds": N, "minutes": N, "hours": N}  at least one; summed; the sum must be > 0
    once      {"run_at": ISO 8601}  a naive time is a wall time in the schedule's zone
    hourly    {"minute": M}  minute defaults to 0
    daily     {"hour": H, "minute": M}  hour is required, minute defaults to 0
    weekly    {"day": "monday"} or {"days": ["mon", "thu"]}, plus hour and minute as for daily
    monthly   {"day": 1..31 | "last"}, plus hour and minute as for daily; short months are skipped

Every shape also takes timezone, jitter, start_date, end_date, timeout_seconds, max_retries and
misfire_grace_time; a null value counts as absent (so a null required key is missing). Integers
are JSON integers (true is not 1, 2.0 is not 2). Naive dates are wall times in the schedule's zone
(resolved by the wall-clock rules of `model.wallclock`); start_date and run_at are rounded up and
end_date down to whole seconds, so no fire time oversteps them. The interval anchor is start_date,
else created_at truncated to whole seconds; without either (validation only) it is None, which
`model.fire_times` reads as the Unix epoch. Limits: jitter <= 86400 s, max_retries <= 100, an
interval <= 10 years; cron searches give up after 50 years without a match (`model.wallclock`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.errors import InvalidScheduleError
from services.model.wallclock import (
    SECOND,
    CronRule,
    DailyRule,
    HourlyRule,
    MonthlyRule,
    WallRule,
    WeeklyRule,
    cron_problem,
    resolve_wall,
)

FREQUENCIES = ("cron", "interval", "once", "hourly", "daily", "weekly", "monthly")
COMMON_KEYS = (
    "timezone",
    "jitter",
    "start_date",
    "end_date",
    "timeout_seconds",
    "max_retries",
    "misfire_grace_time",
)
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "cron": ("expression",),
    "interval": ("seconds", "minutes", "hours"),
    "once": ("run_at",),
    "hourly": ("minute",),
    "daily": ("hour", "minute"),
    "weekly": ("day", "days", "hour", "minute"),
    "monthly": ("day", "hour", "minute"),
}
MAX_JITTER = 86_400
MAX_RETRIES = 100
MAX_INTERVAL = 3650 * 86_400  # ten years: keeps anchor + k * period far from datetime's limits
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBERS = {name: n for n, day in enumerate(_DAYS) for name in (day, day[:3])}
_DAY_HINT = "a day name (monday-sunday or mon-sun, any case)"
# Only plain zone names reach the file system, never paths such as '../../etc/passwd'.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


@dataclass(frozen=True)
class ScheduleSpec:
    frequency: str
    timezone: ZoneInfo  # time_config.timezone, else the default zone
    jitter: int = 0  # seconds; 0 = none
    start_date: datetime | None = None  # aware UTC, whole seconds
    end_date: datetime | None = None
    timeout_seconds: float | None = None
    max_retries: int | None = None
    misfire_grace_time: float | None = None  # None = the daemon's default
    schedule_id: str = ""  # seeds the deterministic jitter
    anchor: datetime | None = None  # interval phase: start_date, else created_at
    rule: WallRule | None = None  # cron, hourly, daily, weekly, monthly
    period: timedelta | None = None  # interval
    run_at: datetime | None = None  # once: aware UTC, whole seconds


@dataclass(frozen=True)
class _Shape:
    rule: WallRule | None = None
    period: timedelta | None = None
    run_at: datetime | None = None


def _got(value: object) -> str:
    if type(value) is int:  # plain integers read best bare: 'got 25'
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo | None:
    """The zone called `name`, or None when it is not an IANA time zone."""
    if not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        return None


def _round_up(instant: datetime) -> datetime:
    return instant.replace(microsecond=0) + SECOND if instant.microsecond else instant


class _Reader:
    """Reads one time_config, collecting every problem rather than stopping at the first."""

    def __init__(self, config: dict[str, object], frequency: str, zone: ZoneInfo) -> None:
        self.config = config
        self.frequency = frequency
        self.zone = zone
        self.problems: list[str] = []

    def required(self, key: str) -> bool:
        if self.config.get(key) is not None:
            return True
        self.problems.append(f"time_config.{key} is required for {self.frequency}")
        return False

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.config.get(key)
        if value is None:
            return default
        if type(value) is int and low <= value <= high:
            return value
        self.problems.append(
            f"time_config.{key} must be an integer {low}-{high}, got {_got(value)}"
        )
        return None

    def number(self, key: str, low: float, *, inclusive: bool) -> float | None:
        value = self.config.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            if value > low or (inclusive and value == low):
                return float(value)
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        self.problems.append(f"time_config.{key} must be a number {bound}, got {_got(value)}")
        return None

    def date(self, key: str) -> datetime | None:
        value = self.config.get(key)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            self.problems.append(
                f"time_config.{key} must be an ISO 8601 date-time, got {_got(value)}"
            )
            return None
        try:
            if parsed.tzinfo is None:
                return resolve_wall(parsed, self.zone)
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00:00+14:00 is before year 1
            self.problems.append(
                f"time_config.{key} {value!r} is out of the supported range of dates"
            )
            return None

    def hour_minute(self) -> tuple[int | None, int | None]:
        hour = self.integer("hour", 0, 23) if self.required("hour") else None
        return hour, self.integer("minute", 0, 59, default=0)


def _cron(r: _Reader) -> _Shape | None:
    expression = r.config.get("expression")
    if not r.required("expression"):
        return None
    if not isinstance(expression, str):
        r.problems.append(f"time_config.expression must be a string, got {_got(expression)}")
        return None
    problem = cron_problem(expression)
    if problem is not None:
        r.problems.append(problem)
        return None
    fields = expression.split()
    # The hour field is the second of five, or the third when seconds come first.
    hour_field = fields[len(fields) - 4]
    return _Shape(rule=CronRule(" ".join(fields), len(fields) == 6, hour_field.startswith("*")))


def _interval(r: _Reader) -> _Shape | None:
    units = {"seconds": 1, "minutes": 60, "hours": 3600}
    if not any(key in r.config for key in units):
        r.problems.append("time_config.seconds, minutes or hours is required for interval")
        return None
    parts = [r.integer(key, 0, MAX_INTERVAL // unit, default=0) for key, unit in units.items()]
    if any(part is None for part in parts):
        return None
    total = sum((part or 0) * unit for part, unit in zip(parts, units.values(), strict=True))
    if not 0 < total <= MAX_INTERVAL:
        r.problems.append(
            f"interval must be 1-{MAX_INTERVAL} seconds in total (seconds + minutes + hours), "
            f"got {total}"
        )
        return None
    return _Shape(period=timedelta(seconds=total))


def _once(r: _Reader) -> _Shape | None:
    run_at = r.date("run_at") if r.required("run_at") else None
    return None if run_at is None else _Shape(run_at=_round_up(run_at))


def _hourly(r: _Reader) -> _Shape | None:
    minute = r.integer("minute", 0, 59, default=0)
    return None if minute is None else _Shape(rule=HourlyRule(minute))


def _daily(r: _Reader) -> _Shape | None:
    hour, minute = r.hour_minute()
    return None if hour is None or minute is None else _Shape(rule=DailyRule(hour, minute))


def _weekday(r: _Reader, label: str, value: object) -> int | None:
    number = _DAY_NUMBERS.get(value.lower()) if isinstance(value, str) else None
    if number is None:
        r.problems.append(f"time_config.{label} must be {_DAY_HINT}, got {_got(value)}")
    return number


def _weekly(r: _Reader) -> _Shape | None:
    hour, minute = r.hour_minute()
    days: list[int | None] = []
    if "day" in r.config and "days" in r.config:
        r.problems.append("time_config takes day or days for weekly, not both")
    elif "day" in r.config:
        days.append(_weekday(r, "day", r.config["day"]))
    elif "days" in r.config:
        listed = r.config["days"]
        if isinstance(listed, list) and listed:
            days.extend(_weekday(r, f"days[{n}]", value) for n, value in enumerate(listed))
        else:
            r.problems.append(
                f"time_config.days must be a non-empty list of day names, got {_got(listed)}"
            )
    else:
        r.problems.append("time_config.day or time_config.days is required for weekly")
    if hour is None or minute is None or not days or None in days:
        return None
    weekdays = tuple(sorted({day for day in days if day is not None}))
    return _Shape(rule=WeeklyRule(hour, minute, weekdays))


def _monthly(r: _Reader) -> _Shape | None:
    hour, minute = r.hour_minute()
    if not r.required("day"):
        return None
    day = r.config["day"]
    day_number: int | None = None  # None = the last day of the month
    if type(day) is int and 1 <= day <= 31:
        day_number = day
    elif not (isinstance(day, str) and day.lower() == "last"):
        r.problems.append(f"time_config.day must be an integer 1-31 or 'last', got {_got(day)}")
        return None
    if hour is None or minute is None:
        return None
    return _Shape(rule=MonthlyRule(day_number, hour, minute))


_SHAPES: dict[str, Callable[[_Reader], _Shape | None]] = {
    "cron": _cron,
    "interval": _interval,
    "once": _once,
    "hourly": _hourly,
    "daily": _daily,
    "weekly": _weekly,
    "monthly": _monthly,
}


def _frequency_name(frequency: object, problems: list[str]) -> str | None:
    if not isinstance(frequency, str):
        problems.append(f"frequency must be a string, got {_got(frequency)}")
        return None
    if frequency not in FREQUENCIES:
        problems.append(
            f"unknown frequency {frequency!r} (expected one of: {', '.join(FREQUENCIES)})"
        )
        return None
    return frequency


def _zone_of(config: dict[str, object], default_timezone: str, problems: list[str]) -> ZoneInfo:
    given = config.get("timezone")
    name = default_timezone if given is None else given
    label = "default timezone" if given is None else "time_config.timezone"
    if not isinstance(name, str):
        problems.append(f"{label} must be a string, got {_got(name)}")
        return ZoneInfo("UTC")
    zone = load_zone(name)
    if zone is None:
        problems.append(f"{label} {name!r} is not an IANA time zone")
        return ZoneInfo("UTC")
    return zone


def _read(
    frequency: object,
    time_config: object,
    default_timezone: str,
    schedule_id: object,
    created_at: datetime | None,
) -> tuple[ScheduleSpec | None, list[str]]:
    problems: list[str] = []
    name = _frequency_name(frequency, problems)
    if not isinstance(time_config, dict):
        problems.append(f"time_config must be a JSON object, got {_got(time_config)}")
        return None, problems
    if name is not None:
        # Unknown keys are usually typos, so they are errors rather than ignored.
        known = SHAPE_KEYS[name] + COMMON_KEYS
        problems.extend(
            f"time_config has unknown key {key!r} for {name} (accepted: {', '.join(known)})"
            for key in time_config
            if key not in known
        )
    zone = _zone_of(time_config, default_timezone, problems)
    r = _Reader(time_config, str(frequency), zone)
    jitter = r.integer("jitter", 0, MAX_JITTER, default=0)
    max_retries = r.integer("max_retries", 0, MAX_RETRIES)
    timeout = r.number("timeout_seconds", 0, inclusive=False)
    grace = r.number("misfire_grace_time", 0, inclusive=True)
    start, end = r.date("start_date"), r.date("end_date")
    if start is not None and end is not None and end <= start:
        r.problems.append(
            f"time_config.end_date {time_config['end_date']!r} must be after "
            f"time_config.start_date {time_config['start_date']!r}"
        )
    shape = _SHAPES[name](r) if name is not None else None
    if shape is not None and shape.period is not None and jitter:
        # Jitter beyond the period would shuffle occurrences (and cost a search per period).
        period_s = int(shape.period.total_seconds())
        if jitter >= period_s:
            r.problems.append(
                f"time_config.jitter must be less than the interval ({period_s} s), got {jitter}"
            )
    problems.extend(r.problems)
    if name is None or shape is None or problems:
        return None, problems
    if start is not None:
        start = _round_up(start)
    if end is not None:
        end = end.replace(microsecond=0)
    if created_at is not None and created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)  # timestamptz columns are UTC
    anchor = start or (created_at.astimezone(UTC).replace(microsecond=0) if created_at else None)
    spec = ScheduleSpec(
        frequency=name,
        timezone=zone,
        jitter=jitter or 0,
        start_date=start,
        end_date=end,
        timeout_seconds=timeout,
        max_retries=max_retries,
        misfire_grace_time=grace,
        schedule_id="" if schedule_id is None else str(schedule_id),
        anchor=anchor,
        rule=shape.rule,
        period=shape.period,
        run_at=shape.run_at,
    )
    return spec, []


def parse_schedule(
    frequency: object,
    time_config: object,
    *,
    default_timezone: str = "UTC",
    schedule_id: object = "",
    created_at: datetime | None = None,
    config_json: str | None = None,
) -> ScheduleSpec:
    """The ScheduleSpec of a row; InvalidScheduleError lists every problem, joined by '; '.
    `config_json`: time_config's stored text, when known (saves encoding it for the cache)."""
    key = _cache_key(frequency, time_config, config_json)
    if key is None:
        spec, problems = _read(frequency, time_config, default_timezone, schedule_id, created_at)
    else:
        # Many rows share a configuration (every "daily at 02:00"): parse each one once and
        # give each row its own id and phase anchor.
        template, cached_problems = _read_cached(key[0], key[1], default_timezone)
        problems = list(cached_problems)
        spec = None
        if template is not None:
            spec = _with_identity(
                template,
                "" if schedule_id is None else str(schedule_id),
                template.start_date or _anchor_of(created_at),
            )
    if spec is None:
        raise InvalidScheduleError("; ".join(problems))
    return spec


def _with_identity(
    template: ScheduleSpec, schedule_id: str, anchor: datetime | None
) -> ScheduleSpec:
    """A copy of a cached spec with one row's id and anchor (dataclasses.replace re-runs
    __init__ and costs several times more, which shows at 100,000 rows)."""
    spec = object.__new__(ScheduleSpec)
    spec.__dict__.update(template.__dict__)
    object.__setattr__(spec, "schedule_id", schedule_id)
    object.__setattr__(spec, "anchor", anchor)
    return spec


def _cache_key(
    frequency: object, time_config: object, config_json: str | None = None
) -> tuple[str, str] | None:
    if not isinstance(frequency, str) or not isinstance(time_config, dict):
        return None
    if config_json is not None:
        return frequency, config_json
    try:
        return frequency, json.dumps(time_config)  # key order kept: messages follow it
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=65_536)
def _read_cached(
    frequency: str, config_json: str, default_timezone: str
) -> tuple[ScheduleSpec | None, tuple[str, ...]]:
    spec, problems = _read(frequency, json.loads(config_json), default_timezone, "", None)
    return spec, tuple(problems)


def _anchor_of(created_at: datetime | None) -> datetime | None:
    """An interval's phase without start_date: its row's creation, to the whole second."""
    if created_at is None:
        return None
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)  # timestamptz columns are UTC
    return created_at.astimezone(UTC).replace(microsecond=0)


def validate_schedule(
    frequency: object, time_config: object, *, default_timezone: str = "UTC"
) -> list[str]:
    """Every problem of (frequency, time_config); [] when it is valid."""
    return _read(frequency, time_config, default_timezone, "", None)[1]
