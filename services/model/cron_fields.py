"""A cron matcher of our own for the plain expressions most schedules use, croniter's answers
without croniter's cost.

At 100,000 varied schedules (40 % crons, nearly each its own expression) croniter's parsing and
`get_next` were half the start-up: every distinct expression was expanded twice and searched
twice. `plain_cron(expression, seconds_first)` reads the subset of croniter's syntax whose meaning
is plain arithmetic (numbers, `a-b`, `*`, `*/s`, `a-b/s`, lists of them, 5 or 6 fields, no names,
no `L`, `W`, `#`, `?`, no year field, day-of-week 0-6) into sorted tuples, or returns None, and
the caller keeps croniter for the rest. The matcher follows croniter 7 exactly, which
tests/unit/test_cron_fields.py checks on thousands of random expressions:

* `*/s` counts from the field's first value (day-of-month 1, 3, 5 ...; month 1, 4, 7, 10);
* day-of-month and day-of-week both restricted means either matches (Vixie cron's OR); a day
  field that lists every value counts as `*` only when the other one's text has a `*`
  (croniter's rule: `0 0 1-31 * 1` fires every day, `0 0 * * 1` on Mondays);
* a day-of-month past a month's end is skipped; seconds are 0 with 5 fields.

Matches are naive wall times; `model.wallclock` turns them into instants.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from calendar import monthrange
from dataclasses import dataclass
from datetime import MAXYEAR, date, datetime, timedelta
from functools import lru_cache

from services.model.sharing import shared

_ITEM = re.compile(r"(\*)?(?:(\d+)(?:-(\d+))?)?(?:/(\d+))?", re.ASCII)
# (low, high) of second, minute, hour, day-of-month, month, day-of-week (Sunday = 0).
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


def _field(text: str, low: int, high: int) -> tuple[int, ...] | None:
    """The values of one field, or None when the text is not plain (the caller then leaves it
    to croniter)."""
    values: set[int] = set()
    tokens = text.split(",")
    for token in tokens:
        match = _ITEM.fullmatch(token)
        if match is None:
            return None
        star, first, last, step_text = match.groups()
        if (star is None) == (first is None):
            return None  # neither a star nor a number (``, `/5`), or both (`*5`)
        if star is not None and len(tokens) > 1:
            return None  # `*,5`: croniter reads the list as '*' in some places, not in others
        if step_text is not None and first is not None and last is None:
            return None  # `5/15`: croniter reads it as 5-max/15; not worth a rule of our own
        if last is not None and int(last) == int(first):
            return None  # croniter 7 reads `5-5` as `*` (a quirk no rule of ours should copy)
        start, end = (low, high) if star is not None else (int(first), int(last or first))
        step = 1 if step_text is None else int(step_text)
        if not (low <= start <= end <= high) or not 1 <= step <= high:
            return None  # out of range, reversed or odd steps: croniter decides (or refuses)
        values.update(range(start, end + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True, slots=True)
class PlainCron:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...] | None  # None = any day of the month
    months: frozenset[int]
    weekdays: frozenset[int] | None  # cron's numbers, Sunday = 0; None = any day of the week
    either_day: bool  # both day fields restricted: a day matching one of them is enough

    def _day_matches(self, day: date) -> bool:
        in_days = self.days is None or day.day in self.days
        in_weekdays = self.weekdays is None or (day.weekday() + 1) % 7 in self.weekdays
        if self.either_day:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _time_from(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first (h, m, s) of the rule at or after the given time of day."""
        for h in self.hours[bisect_left(self.hours, hour) :]:
            m_from = minute if h == hour else 0
            for m in self.minutes[bisect_left(self.minutes, m_from) :]:
                s_from = second if (h, m) == (hour, minute) else 0
                index = bisect_left(self.seconds, s_from)
                if index < len(self.seconds):
                    return h, m, self.seconds[index]
        return None

    def next_after(self, after: datetime, search_years: int) -> datetime | None:
        """The first match strictly after `after` (naive), within `search_years` of it."""
        start = after.replace(microsecond=0) + _SECOND
        day, clock = start.date(), (start.hour, start.minute, start.second)
        last_year = min(MAXYEAR, after.year + search_years)
        while day.year <= last_year:
            if day.month not in self.months:
                year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
                if year > last_year:
                    return None
                day, clock = date(year, month, 1), (0, 0, 0)
                continue
            if self._day_matches(day):
                found = self._time_from(*clock)
                if found is not None:
                    return datetime(day.year, day.month, day.day, *found)
            if day.year == MAXYEAR and (day.month, day.day) == (12, 31):
                return None
            day, clock = day + _DAY, (0, 0, 0)
        return None


@lru_cache(maxsize=4096)  # validation and the engine cache ask for the same expression
def plain_cron(expression: str, seconds_first: bool) -> PlainCron | None:
    """The rule of a plain expression in croniter's syntax (see the module docstring), else None."""
    texts = expression.split()
    if len(texts) != (6 if seconds_first else 5):
        return None  # a year field, or not a cron at all
    if not seconds_first:
        texts = ["0", *texts]
    read = [_field(text, low, high) for text, (low, high) in zip(texts, _RANGES, strict=True)]
    if any(field is None for field in read):
        return None
    seconds, minutes, hours, days, months, weekdays = (field or () for field in read)
    day_text, weekday_text = texts[3], texts[5]
    # croniter: a bare `*` is any day; a day field listing every value otherwise (`1-31`, `*/1`)
    # is any day only if the other day field's text has a `*` (`0 0 1-31 * 1` fires daily).
    all_days = day_text == "*" or (len(days) == 31 and "*" in weekday_text)
    all_weekdays = weekday_text == "*" or (len(weekdays) == 7 and "*" in day_text)
    day_set = None if all_days else days
    weekday_set = None if all_weekdays else frozenset(weekdays)
    for d in day_set or ():
        if not any(d <= monthrange(2000, month)[1] for month in months):
            return None  # a day no listed month has (30 2): croniter's search says what it does
    return PlainCron(
        seconds=shared(seconds),
        minutes=shared(minutes),
        hours=shared(hours),
        days=None if day_set is None else shared(day_set),
        months=shared(frozenset(months)),
        weekdays=None if weekday_set is None else shared(weekday_set),
        either_day=day_set is not None and weekday_set is not None,
    )
