"""Local wall-clock rules, and how the wall times they name become real (UTC) instants.

A rule names local wall times in a schedule's zone; `next_local(t)` returns the first matching
naive local time strictly after `t` (second resolution). Turning a wall time into an instant follows
one of two sets of rules, because users of the two kinds of schedule mean different things:

* Wall-clock rules (daily, weekly, monthly, once, start/end dates, and cron expressions whose hour
  field is fixed, i.e. neither starts with ``*`` nor is ``H/n``; `model.cron_syntax`): every
  matching wall time fires exactly once.
  A time inside a spring-forward gap fires at the first instant after the gap (Europe/Berlin 02:30
  on the spring day fires at 03:00 CEST); a time that occurs twice in a fall-back fires once, at its
  first occurrence (fold=0). A daily job therefore fires once on every calendar day.
* Real-instant rules (hourly, and cron expressions whose hour field starts with ``*`` such as ``*``
  or ``*/2``, as classic Vixie cron treats them, or is ``H/2``, ``*/2`` with a hashed phase,
  ``@hourly`` included): fire at every real instant whose local time
  matches. Local times that do not exist are skipped and a repeated local time fires twice:
  Europe/Berlin hourly fires 23 times on the spring day and 25 times on the fall day;
  Australia/Lord_Howe (30-minute shift) loses ``:00-:29`` of 02:xx in spring and repeats
  ``:30-:59`` of 01:xx in autumn, so hourly at :15 fires 23/24 times and at :45 24/25 times.

Both assume that a zone changes its UTC offset at most once in any 24 hours; in the tz database
offset changes are at least four days apart.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

SECOND = timedelta(seconds=1)
_ZERO = timedelta(0)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


class WallRule(Protocol):
    """Names local wall times; see the module docstring for how they map to instants."""

    @property
    def real_instants(self) -> bool: ...

    def next_local(self, after: datetime) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class HourlyRule:
    minute: int

    @property
    def real_instants(self) -> bool:
        return True

    def next_local(self, after: datetime) -> datetime | None:
        candidate = datetime(after.year, after.month, after.day, after.hour, self.minute)
        return candidate if candidate > after else candidate + _HOUR


@dataclass(frozen=True, slots=True)
class DailyRule:
    hour: int
    minute: int

    @property
    def real_instants(self) -> bool:
        return False

    def next_local(self, after: datetime) -> datetime | None:
        candidate = datetime(after.year, after.month, after.day, self.hour, self.minute)
        return candidate if candidate > after else candidate + _DAY


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    hour: int
    minute: int
    weekdays: tuple[int, ...]  # Monday = 0, sorted, not empty

    @property
    def real_instants(self) -> bool:
        return False

    def next_local(self, after: datetime) -> datetime | None:
        at = time(self.hour, self.minute)
        day = after.date()
        for _ in range(8):
            if day.weekday() in self.weekdays:
                candidate = datetime.combine(day, at)
                if candidate > after:
                    return candidate
            day += _DAY
        return None


@dataclass(frozen=True, slots=True)
class MonthlyRule:
    day: int | None  # None = the last day of each month
    hour: int
    minute: int

    @property
    def real_instants(self) -> bool:
        return False

    def next_local(self, after: datetime) -> datetime | None:
        year, month = after.year, after.month
        # Day 31 skips at most two months in a row, so 14 months always reach a match.
        for _ in range(14):
            if year > MAXYEAR:
                return None
            last = calendar.monthrange(year, month)[1]
            day = last if self.day is None else self.day
            if day <= last:
                candidate = datetime(year, month, day, self.hour, self.minute)
                if candidate > after:
                    return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None


# datetime.replace() costs several times a constructor call, and these run once per row and poll.
def wall_time(moment: datetime) -> datetime:
    """The naive wall time of `moment`, in whole seconds and without fold."""
    return datetime(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second
    )


def _in_zone(wall: datetime, zone: ZoneInfo, fold: int = 0) -> datetime:
    return datetime(
        wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second, wall.microsecond,
        tzinfo=zone, fold=fold,
    )  # fmt: skip


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or _ZERO  # never None: every moment here carries a ZoneInfo


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (before, after] that has the UTC offset of `after`.

    The caller knows the offset changes exactly once in between; tz transitions fall on whole
    seconds, so bisection over seconds finds it exactly.
    """
    target = _offset(after.astimezone(zone))
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(datetime.fromtimestamp(middle, zone)) == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# PEP 495 reads a wall time at fold=0 with the offset before a transition and at fold=1 with the
# one after: equal offsets mean an ordinary time, a larger fold=0 offset a repeated time (fold=0
# being its first occurrence), a smaller one a time inside a spring-forward gap.


def resolve_wall(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) at which the naive wall time `local` fires under the wall-clock rules."""
    first, second = _in_zone(local, zone), _in_zone(local, zone, fold=1)
    if _offset(first) >= _offset(second):
        return first.astimezone(UTC)
    # In the gap fold=1 lands before the transition and fold=0 after it; the transition is the
    # first instant after the gap.
    return _transition(zone, second.astimezone(UTC), first.astimezone(UTC))


def _instants(local: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Every real instant whose wall time is `local`: none in a gap, two in a repeat."""
    first, second = _in_zone(local, zone), _in_zone(local, zone, fold=1)
    before, after = _offset(first), _offset(second)
    if before == after:
        return (first.astimezone(UTC),)
    return () if before < after else (first.astimezone(UTC), second.astimezone(UTC))


def _at_offset(wall: datetime, zone: ZoneInfo, offset: timedelta) -> datetime | None:
    """The first instant of `wall` if it has UTC offset `offset`, else None.

    Nearly every wall time shares the offset of the moment the search starts from: checking that
    guess is cheaper than a full resolution.
    """
    guess = (
        datetime(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second, tzinfo=UTC)
        - offset
    )
    seen = guess.astimezone(zone)
    return guess if not seen.fold and wall_time(seen) == wall else None


def _next_wall_instant(rule: WallRule, zone: ZoneInfo, after: datetime) -> datetime | None:
    local = after.astimezone(zone)
    start = wall_time(local)
    if local.fold:
        # `after` lies in the second pass of a repeated hour, whose wall times already fired in
        # the first pass: resume from the end of the repeat.
        repeat = _offset(_in_zone(local, zone)) - _offset(local)
        change = _transition(zone, after - repeat, after)
        start = wall_time((change + repeat).astimezone(zone)) - SECOND
    offset = _offset(local)
    candidate = rule.next_local(start)
    while candidate is not None:
        instant = _at_offset(candidate, zone, offset) or resolve_wall(candidate, zone)
        if instant > after:
            return instant
        candidate = rule.next_local(candidate)
    return None


def _next_real_instant(rule: WallRule, zone: ZoneInfo, after: datetime) -> datetime | None:
    local = after.astimezone(zone)
    best: datetime | None = None
    repeat = _offset(local) - _offset(_in_zone(local, zone, fold=1))
    if not local.fold and repeat > _ZERO:
        # `after` lies in the first pass of a repeated hour: a wall time of the second pass can
        # come before any later wall time, so look at the earliest match of the repeat too.
        change = _transition(zone, after, after + repeat)
        repeat_start = wall_time(change.astimezone(zone))
        candidate = rule.next_local(repeat_start - SECOND)
        if candidate is not None and candidate < repeat_start + repeat:
            best = _in_zone(candidate, zone, fold=1).astimezone(UTC)
    candidate = rule.next_local(wall_time(local))
    guess = None if candidate is None else _at_offset(candidate, zone, _offset(local))
    if guess is not None and guess > after:
        return guess if best is None or guess < best else best
    while candidate is not None:
        for instant in _instants(candidate, zone):
            if instant > after:
                return instant if best is None or instant < best else best
        candidate = rule.next_local(candidate)
    return best


def next_instant(rule: WallRule, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first instant (aware UTC) strictly after `after` at which `rule` fires in `zone`."""
    if zone.key == "UTC":  # the common case: wall times are instants
        local = rule.next_local(wall_time(after))
        if local is None:
            return None
        return datetime(
            local.year, local.month, local.day, local.hour, local.minute, local.second, tzinfo=UTC
        )
    if rule.real_instants:
        return _next_real_instant(rule, zone, after)
    return _next_wall_instant(rule, zone, after)
