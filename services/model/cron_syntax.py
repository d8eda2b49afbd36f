"""The cron syntax people paste in, read into a rule (`model.cron_rule`) or a message saying what
is wrong (DESIGN.md "Cron syntax"). croniter 7 parses the expression; this module gets it there.

    5 fields      minute hour day-of-month month day-of-week
    6 fields      second first (Quartz, Spring)
    7 fields      second first and a year (1970-2099) last, as in Quartz: 0 0 12 * * ? 2027
    macros        @yearly @annually @monthly @weekly @daily @midnight @hourly, any case, with their
                  classic meaning (@daily = 0 0 * * *); never hashed, unlike croniter's and Jenkins'
    croniter's    names (mon, jan), lists, ranges, steps, L (last day), 15W, 5#3, L5, and ? in the
                  day-of-month and day-of-week fields
    H (Jenkins)   H, H/n, H(a-b), H(a-b)/n in any field: a value drawn from sha256 of the schedule
                  id and the field's name (never Python's salted hash()), so every instance and
                  every restart draws the same one. A bare H draws day-of-month from 1-28 (every
                  month has it) and day-of-week from 0-6; H/n draws its start from the first n
                  values. The year field takes H with a range or a step only.
    Quartz days   LW (the last weekday, Monday-Friday, of the month) and L-n (n = 0-30 days before
                  the last day) as the whole day-of-month field, with * or ? as day-of-week;
                  nL or NAMEL in day-of-week, the last such weekday of the month (cron's numbers:
                  0 or 7 is Sunday, so 5L is the last Friday), which croniter writes L5.

croniter's R (random) is refused: its values differ between instances and restarts. A field that
croniter refuses is named (`bad minute field 'x'`), and the token when the field is a list
(`unsupported token 'Z3' in the day-of-week field`). Whether an expression can fire never depends
on the schedule id: every value that H could draw in a date field is tried (at most 1,000).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from itertools import product
from math import prod

from croniter import croniter

from services.model.cron_fields import plain_cron
from services.model.cron_rule import (
    CRON_SEARCH_YEARS,
    YEAR_FIELD_SEARCH_YEARS,
    CronRule,
    Fields,
    Hashed,
    HashedCron,
    Item,
    MonthEnd,
    render,
)

_FIVE = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_NAMES = {5: _FIVE, 6: ("second", *_FIVE), 7: ("second", *_FIVE, "year")}
_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
    "year": (1970, 2099),  # croniter's years
}
_BARE_H = {"day-of-month": (1, 28), "day-of-week": (0, 6)}  # where a bare H draws from
_DATE_FIELDS = ("day-of-month", "month", "day-of-week", "year")
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_WEEKDAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_HASH = re.compile(r"H(?:\((\d+)-(\d+)\))?(?:/(\d+))?", re.IGNORECASE | re.ASCII)
_MONTH_END = re.compile(r"L(?:(W)|-(\d+))", re.IGNORECASE | re.ASCII)
_LAST_WEEKDAY = re.compile(r"(\d+|[A-Z]{3})L", re.IGNORECASE | re.ASCII)
# An hour field over every hour (*, */2, H/2): real-instant rules (model.wallclock).
_REAL_INSTANT_HOURS = re.compile(r"\*|H/", re.IGNORECASE | re.ASCII)
_MAX_DRAW_CHECKS = 1000


class _Refused(Exception):
    """What follows "cron expression '...'" in the message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@lru_cache(maxsize=4096)
def read_cron(expression: str) -> CronRule | HashedCron | str:
    """The rule of a cron expression (a HashedCron when it has H tokens), or what is wrong."""
    try:
        return _read(expression)
    except _Refused as refused:
        return f"cron expression {expression!r}{refused.detail}"


def _read(expression: str) -> CronRule | HashedCron:
    fields = expression.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        macro = MACROS.get(fields[0].lower())
        if macro is None:
            raise _Refused(f": unknown macro {fields[0]!r} (accepted: {', '.join(MACROS)})")
        fields = macro.split()
    names = FIELD_NAMES.get(len(fields))
    if names is None:
        raise _Refused(f": expected 5, 6 or 7 fields, got {len(fields)}")
    field_of = dict(zip(names, fields, strict=True))
    items = [_items(field, name) for field, name in zip(fields, names, strict=True)]
    days = _month_end(field_of["day-of-month"], field_of["day-of-week"])
    if days is not None:
        items[names.index("day-of-month")] = ("*",)  # the day is the MonthEnd's to check
    seconds_first = len(fields) > 5
    _check_syntax(fields, names, tuple(items), seconds_first)
    hashed = HashedCron(
        fields=tuple(items),
        seconds_first=seconds_first,
        real_instants=bool(_REAL_INSTANT_HOURS.match(field_of["hour"])),
        days=days,
        search_years=(
            YEAR_FIELD_SEARCH_YEARS if field_of.get("year", "*") != "*" else CRON_SEARCH_YEARS
        ),
    )
    _check_fires(hashed, names)
    if any(isinstance(item, Hashed) for field in items for item in field):
        return hashed
    return hashed.bind("")


def _items(field: str, name: str) -> tuple[Item, ...]:
    tokens = field.split(",")
    items: list[Item] = []
    for token in tokens:
        head = token[:1].upper()
        if head == "H":
            items.append(_hashed(token, name))
        elif head == "R":
            raise _Refused(
                f": unsupported token {token!r} in the {name} field (random values differ "
                "between instances and restarts; H gives each schedule a stable one)"
            )
        elif name == "day-of-month" and _MONTH_END.fullmatch(token):
            if len(tokens) > 1:  # read by _month_end
                raise _Refused(
                    f": unsupported token {token!r} in the {name} field ({token} must be the "
                    "whole field)"
                )
            items.append(token)
        elif name == "day-of-week" and (last := _LAST_WEEKDAY.fullmatch(token)):
            items.append(f"L{_weekday(last[1], token)}")
        elif name == "day-of-week" and token.upper() == "L":
            raise _Refused(
                f": unsupported token {token!r} in the {name} field (for the last such "
                "weekday of the month write nL, e.g. 5L for the last Friday)"
            )
        else:
            _check_range(token, name)
            items.append(token)
    return tuple(items)


def _out_of_range(name: str, number: int) -> _Refused:
    low, high = _BOUNDS[name]
    return _Refused(f": {name} {number} out of range {low}-{high}")


def _hashed(token: str, name: str) -> Hashed:
    match = _HASH.fullmatch(token)
    if match is None:
        raise _Refused(f": unsupported token {token!r} in the {name} field")
    begin, end, step_text = match.groups()
    low, high = _BOUNDS[name]
    step = None if step_text is None else int(step_text)
    if step == 0:
        raise _Refused(f": unsupported token {token!r} in the {name} field (a step of 0)")
    if begin is not None:
        for number in (int(begin), int(end)):
            if not low <= number <= high:
                raise _out_of_range(name, number)
        if int(begin) > int(end):
            raise _Refused(f": unsupported token {token!r} in the {name} field (range backwards)")
        return Hashed(name, int(begin), int(end), step)
    if name == "year" and step is None:
        raise _Refused(
            f": unsupported token {token!r} in the year field (H needs a range or a step "
            "there, e.g. H(2026-2030))"
        )
    if step is None:
        low, high = _BARE_H.get(name, (low, high))
    elif name == "day-of-week":
        high = 6  # 7 is Sunday again
    return Hashed(name, low, high, step)


def _weekday(value: str, token: str) -> int:
    if value.isdigit():
        number = int(value)
        if not 0 <= number <= 7:
            raise _out_of_range("day-of-week", number)
        return number
    number_of = _WEEKDAYS.get(value.lower())
    if number_of is None:
        raise _Refused(f": unsupported token {token!r} in the day-of-week field")
    return number_of


def _numbers(token: str) -> list[int]:
    """The plain numbers of a value or range (steps, names and L/#/W aside)."""
    value = token.split("/", 1)[0]
    return [int(part) for part in value.split("-") if part.isascii() and part.isdigit()]


def _check_range(token: str, name: str) -> None:
    low, high = _BOUNDS[name]
    for number in _numbers(token):
        if not low <= number <= high:
            raise _out_of_range(name, number)


def _month_end(day_of_month: str, day_of_week: str) -> MonthEnd | None:
    match = _MONTH_END.fullmatch(day_of_month)
    if match is None:
        return None
    if day_of_week not in ("*", "?"):
        raise _Refused(
            f": {day_of_month!r} in the day-of-month field needs '*' or '?' in the day-of-week "
            f"field, got {day_of_week!r}"
        )
    if match[1]:
        return MonthEnd(weekday=True)
    before = int(match[2])
    if before > 30:
        raise _Refused(
            f": unsupported token {day_of_month!r} in the day-of-month field (L-n takes n 0-30)"
        )
    return MonthEnd(before=before)


def _croniter_refuses(fields: Fields, seconds_first: bool) -> str | None:
    expression = render(fields)
    if plain_cron(expression, seconds_first) is not None:
        return None  # plain syntax is a part of croniter's (model.cron_fields): no need to ask
    try:
        croniter.expand(expression, second_at_beginning=seconds_first)
    except (ValueError, TypeError, KeyError) as error:  # croniter's errors subclass ValueError
        return str(error) or type(error).__name__
    return None


def _alone(count: int, index: int, field: tuple[Item, ...]) -> Fields:
    """`count` fields, all '*' but `field` at `index`."""
    return tuple(field if i == index else ("*",) for i in range(count))


def _check_syntax(
    fields: list[str], names: tuple[str, ...], items: Fields, seconds_first: bool
) -> None:
    error = _croniter_refuses(items, seconds_first)
    if error is None:
        return
    for index, (field, name) in enumerate(zip(fields, names, strict=True)):
        # Blame the first field that fails on its own, all the others being '*' ...
        if _croniter_refuses(_alone(len(items), index, items[index]), seconds_first) is None:
            continue
        tokens = field.split(",")
        if len(tokens) > 1:  # ... and in a list, the first token that fails on its own.
            for token, item in zip(tokens, items[index], strict=True):
                single = _alone(len(items), index, (item,))
                if _croniter_refuses(single, seconds_first) is not None:
                    raise _Refused(f": unsupported token {token!r} in the {name} field")
            # Each token is fine alone: croniter refuses the mix (e.g. 1,5L).
            raise _Refused(f": bad {name} field {field!r} (these values cannot be combined)")
        raise _Refused(f": bad {name} field {field!r}")
    raise _Refused(f" is not valid: {error}")


def _date_choices(item: Hashed) -> list[int]:
    """The draws of a date-field H that can differ in whether the expression fires at all."""
    choices = list(item.choices())
    if item.field != "day-of-month":
        return choices
    # Every month has days 1-28, so every draw whose first day is one of them behaves alike.
    early = [value for value in choices if value <= 28]
    return early[:1] + [value for value in choices if value > 28]


def _check_fires(hashed: HashedCron, names: tuple[str, ...]) -> None:
    """Refuses an expression with no fire time, for whatever its H tokens could draw."""
    drawn = [
        item
        for field, name in zip(hashed.fields, names, strict=True)
        if name in _DATE_FIELDS
        for item in field
        if isinstance(item, Hashed)
    ]
    if (
        not drawn
        and hashed.days is None
        and plain_cron(render(hashed.fields), hashed.seconds_first)
    ):
        # A plain expression always fires: plain_cron refuses one whose days no listed month
        # has, and two restricted day fields fire on either. The search below costs more than
        # the rest of the parse (most of a varied install's crons are plain).
        return
    options = [_date_choices(item) for item in drawn]
    count = prod(len(values) for values in options)
    if count > _MAX_DRAW_CHECKS:
        raise _Refused(
            f": H could draw {count} different dates, too many to check that each fires "
            f"(at most {_MAX_DRAW_CHECKS}); give the H tokens of the date fields narrower ranges"
        )
    # A year field names years from 1970 on; a past year makes a schedule expire, not invalid.
    start = datetime(1969, 12, 31, 23, 59, 59) if len(names) == 7 else datetime(2000, 1, 1)
    for values in product(*options):
        chosen = dict(zip(drawn, values, strict=True))
        if hashed.bind_to(chosen).next_local(start) is None:
            if not drawn:
                raise _Refused(" never fires")
            which = ", ".join(f"{item.field} {value}" for item, value in chosen.items())
            raise _Refused(f" never fires when H draws {which}")
