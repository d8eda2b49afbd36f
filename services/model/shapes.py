"""The frequency shapes of time_config: one reader per frequency, collecting every problem.

Each reader turns its keys (see `model.spec`) into a wall-clock rule, a period or an instant;
`model.spec` adds the keys every shape shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.model.cron_syntax import read_cron
from services.model.sharing import shared
from services.model.wallclock import (
    SECOND,
    DailyRule,
    HourlyRule,
    MonthlyRule,
    WallRule,
    WeeklyRule,
    resolve_wall,
)

MAX_INTERVAL = 3650 * 86_400  # ten years: keeps anchor + k * period far from datetime's limits
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBERS = {name: n for n, day in enumerate(_DAYS) for name in (day, day[:3])}
_DAY_HINT = "a day name (monday-sunday or mon-sun, any case)"


@dataclass(frozen=True)
class Shape:
    rule: WallRule | None = None
    period: timedelta | None = None
    run_at: datetime | None = None


def got(value: object) -> str:
    if type(value) is int:  # plain integers read best bare: 'got 25'
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


def round_up(instant: datetime) -> datetime:
    return instant.replace(microsecond=0) + SECOND if instant.microsecond else instant


class Reader:
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
        self.problems.append(f"time_config.{key} must be an integer {low}-{high}, got {got(value)}")
        return None

    def number(
        self, key: str, low: float, *, inclusive: bool, high: float | None = None
    ) -> float | None:
        value = self.config.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            if (value > low or (inclusive and value == low)) and (high is None or value <= high):
                return float(value)
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        if high is not None:
            bound += f" and <= {high:.0f}"
        self.problems.append(f"time_config.{key} must be a number {bound}, got {got(value)}")
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
                f"time_config.{key} must be an ISO 8601 date-time, got {got(value)}"
            )
            return None
        try:
            if parsed.tzinfo is None:
                return shared(resolve_wall(parsed, self.zone))
            return shared(parsed.astimezone(UTC))
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00:00+14:00 is before year 1
            self.problems.append(
                f"time_config.{key} {value!r} is out of the supported range of dates"
            )
            return None

    def hour_minute(self) -> tuple[int | None, int | None]:
        hour = self.integer("hour", 0, 23) if self.required("hour") else None
        return hour, self.integer("minute", 0, 59, default=0)


def _cron(r: Reader) -> Shape | None:
    expression = r.config.get("expression")
    if not r.required("expression"):
        return None
    if not isinstance(expression, str):
        r.problems.append(f"time_config.expression must be a string, got {got(expression)}")
        return None
    rule = read_cron(expression)  # a HashedCron (H) is bound to its schedule by model.spec
    if isinstance(rule, str):
        r.problems.append(rule)
        return None
    return Shape(rule=rule)


def _interval(r: Reader) -> Shape | None:
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
    return Shape(period=shared(timedelta(seconds=total)))


def _once(r: Reader) -> Shape | None:
    run_at = r.date("run_at") if r.required("run_at") else None
    return None if run_at is None else Shape(run_at=round_up(run_at))


def _hourly(r: Reader) -> Shape | None:
    minute = r.integer("minute", 0, 59, default=0)
    return None if minute is None else Shape(rule=shared(HourlyRule(minute)))


def _daily(r: Reader) -> Shape | None:
    hour, minute = r.hour_minute()
    return None if hour is None or minute is None else Shape(rule=shared(DailyRule(hour, minute)))


def _weekday(r: Reader, label: str, value: object) -> int | None:
    number = _DAY_NUMBERS.get(value.lower()) if isinstance(value, str) else None
    if number is None:
        r.problems.append(f"time_config.{label} must be {_DAY_HINT}, got {got(value)}")
    return number


def _weekly(r: Reader) -> Shape | None:
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
                f"time_config.days must be a non-empty list of day names, got {got(listed)}"
            )
    else:
        r.problems.append("time_config.day or time_config.days is required for weekly")
    if hour is None or minute is None or not days or None in days:
        return None
    weekdays = tuple(sorted({day for day in days if day is not None}))
    return Shape(rule=shared(WeeklyRule(hour, minute, weekdays)))


def _monthly(r: Reader) -> Shape | None:
    hour, minute = r.hour_minute()
    if not r.required("day"):
        return None
    day = r.config["day"]
    day_number: int | None = None  # None = the last day of the month
    if type(day) is int and 1 <= day <= 31:
        day_number = day
    elif not (isinstance(day, str) and day.lower() == "last"):
        r.problems.append(f"time_config.day must be an integer 1-31 or 'last', got {got(day)}")
        return None
    if hour is None or minute is None:
        return None
    return Shape(rule=shared(MonthlyRule(day_number, hour, minute)))


SHAPES: dict[str, Callable[[Reader], Shape | None]] = {
    "cron": _cron,
    "interval": _interval,
    "once": _once,
    "hourly": _hourly,
    "daily": _daily,
    "weekly": _weekly,
    "monthly": _monthly,
}
