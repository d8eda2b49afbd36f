"""A cron expression as a wall-clock rule: croniter names the wall times, plus a day-of-month rule
for the Quartz days croniter lacks (`LW`, `L-n`).

`CronRule.expression` is already in croniter's own syntax (`model.cron_syntax` gets it there:
macros expanded, `nL` rewritten). An expression with H tokens is a `HashedCron`, whose
`bind(schedule_id)` draws each H from sha256 of (schedule id, field name): the same value in
every process, unlike Python's salted `hash()`. croniter only ever sees naive wall times; the
DST rules that turn them into instants are `model.wallclock`'s.
"""

from __future__ import annotations

import calendar
import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import MAXYEAR, date, datetime, timedelta
from functools import lru_cache
from hashlib import sha256

from croniter import CroniterBadDateError, croniter

from services.model.cron_fields import PlainCron, plain_cron

_SECOND = timedelta(seconds=1)
# croniter stops searching after this many years without a match, so a search can never spin.
CRON_SEARCH_YEARS = 50
# A year field bounds the search by itself (croniter knows years 1970-2099 only): search them all.
YEAR_FIELD_SEARCH_YEARS = 130
_MAX_BOUND = 4096  # rules a HashedCron keeps for the rows that share them


@dataclass(frozen=True, slots=True)
class MonthEnd:
    """A day counted from the end of each month: `before` days before the last one (Quartz
    `L-n`; a month without such a day has none), or the last weekday, Monday to Friday (`LW`)."""

    before: int = 0
    weekday: bool = False

    def day_in(self, year: int, month: int) -> int | None:
        last = calendar.monthrange(year, month)[1]
        if self.weekday:
            # Saturday (5) goes back one day to Friday, Sunday (6) two.
            return last - max(0, calendar.weekday(year, month, last) - 4)
        day = last - self.before
        return day if day >= 1 else None

    def matches(self, day: date) -> bool:
        return self.day_in(day.year, day.month) == day.day

    def next_day(self, after: date) -> date | None:
        """The first matching day strictly after `after`."""
        year, month = after.year, after.month
        # L-30 exists in the 31-day months only, never more than two months apart.
        for _ in range(13):
            day = self.day_in(year, month)
            if day is not None and (year, month, day) > (after.year, after.month, after.day):
                return date(year, month, day)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            if year > MAXYEAR:
                return None
        return None


@dataclass(frozen=True, slots=True)  # one per distinct expression: no __dict__
class CronRule:
    expression: str  # croniter's syntax, fields joined by single spaces
    seconds_first: bool  # 6 or 7 fields
    real_instants: bool  # the hour field covers every hour (see model.wallclock)
    days: MonthEnd | None = None  # also required of the day (croniter's day-of-month is '*')
    search_years: int = CRON_SEARCH_YEARS

    def next_local(self, after: datetime) -> datetime | None:
        engine = cron_engine(self.expression, self.seconds_first, self.search_years)
        found = engine.next_after(after)
        if self.days is None:
            return found
        last_year = after.year + self.search_years
        while found is not None and not self.days.matches(found.date()):
            # Skip straight to the next day the rule allows, then ask croniter from its start.
            day = self.days.next_day(found.date())
            if day is None or day.year > last_year:
                return None
            found = engine.next_after(datetime(day.year, day.month, day.day) - _SECOND)
        return found


@dataclass(frozen=True, slots=True)
class Hashed:
    """An H token: a value drawn from [low, high], or with `step` a start drawn from the first
    `step` values of [low, high], then every `step` up to `high`."""

    field: str  # its field's name ("minute"): the same draw in 5, 6 and 7 fields
    low: int
    high: int
    step: int | None = None

    def choices(self) -> range:
        top = self.high if self.step is None else min(self.low + self.step - 1, self.high)
        return range(self.low, top + 1)

    def draw(self, schedule_id: str) -> int:
        digest = sha256(f"{schedule_id}|{self.field}".encode()).digest()
        choices = self.choices()
        return choices[int.from_bytes(digest[:8], "big") % len(choices)]

    def token(self, value: int) -> str:
        if self.step is None or value == self.high:
            return str(value)  # croniter reads "59-59/15" as the whole field: a lone end is plain
        return f"{value}-{self.high}/{self.step}"


Item = str | Hashed
Fields = tuple[tuple[Item, ...], ...]  # each field's comma-separated items


def render(fields: Fields, values: Mapping[Hashed, int] | None = None) -> str:
    """croniter's text of `fields`, each H token as `values` has it (else its first choice)."""
    chosen = values or {}
    return " ".join(
        ",".join(
            item if isinstance(item, str) else item.token(chosen.get(item, item.low))
            for item in part
        )
        for part in fields
    )


@dataclass(frozen=True, slots=True)
class HashedCron:
    """A cron expression with H tokens; `bind(schedule_id)` is the rule of one schedule. Used as
    a rule itself, it is the rule of the schedule without an id (as validation sees it)."""

    fields: Fields  # croniter's syntax but for the H tokens
    seconds_first: bool
    real_instants: bool
    days: MonthEnd | None
    search_years: int
    # Rows that draw the same values share one rule (a start-up load binds every row).
    _bound: dict[tuple[int, ...], CronRule] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def bind(self, schedule_id: str) -> CronRule:
        hashed = [item for part in self.fields for item in part if isinstance(item, Hashed)]
        values = tuple(item.draw(schedule_id) for item in hashed)
        rule = self._bound.get(values)
        if rule is None:
            rule = self.bind_to(dict(zip(hashed, values, strict=True)))
            if len(self._bound) < _MAX_BOUND:
                self._bound[values] = rule
        return rule

    def bind_to(self, values: Mapping[Hashed, int]) -> CronRule:
        return CronRule(
            render(self.fields, values),
            self.seconds_first,
            self.real_instants,
            self.days,
            self.search_years,
        )

    def next_local(self, after: datetime) -> datetime | None:
        return self.bind("").next_local(after)


class _CronEngine:
    """One croniter per expression, shared by every schedule that uses it.

    croniter keeps its position in the object, so calls are serialised. The engine remembers its
    last answers as intervals (lo, hi) with no match in (lo, hi) and a match at hi: a daemon asks
    for the next match of the same expression from nearly the same time for many rows.
    """

    _MEMORY = 8

    def __init__(self, expression: str, seconds_first: bool, search_years: int) -> None:
        self._cron = croniter(
            expression,
            datetime(2000, 1, 1),
            second_at_beginning=seconds_first,
            max_years_between_matches=search_years,
        )
        self._lock = threading.Lock()
        self._known: list[tuple[datetime, datetime]] = []

    def next_after(self, after: datetime) -> datetime | None:
        with self._lock:
            for low, high in self._known:
                if low <= after < high:
                    return high
            try:
                found: datetime = self._cron.get_next(datetime, start_time=after)
            except CroniterBadDateError:
                return None
            for index, (low, high) in enumerate(self._known):
                if high == found:
                    self._known[index] = (min(low, after), high)
                    return found
            self._known.append((after, found))
            if len(self._known) > self._MEMORY:
                del self._known[0]
            return found


class _PlainEngine:
    """A plain expression's matcher (`model.cron_fields`): croniter's answers, without croniter."""

    __slots__ = ("_plain", "_search_years")

    def __init__(self, plain: PlainCron, search_years: int) -> None:
        self._plain = plain
        self._search_years = search_years

    def next_after(self, after: datetime) -> datetime | None:
        return self._plain.next_after(after, self._search_years)


@lru_cache(maxsize=4096)
def cron_engine(
    expression: str, seconds_first: bool, search_years: int
) -> _CronEngine | _PlainEngine:
    plain = plain_cron(expression, seconds_first)
    if plain is not None:
        return _PlainEngine(plain, search_years)
    return _CronEngine(expression, seconds_first, search_years)
