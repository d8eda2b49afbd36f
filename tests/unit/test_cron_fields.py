"""The plain cron matcher gives croniter's answers exactly (model.cron_fields), DST included."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter

from services.model.cron_fields import plain_cron
from services.model.cron_rule import CRON_SEARCH_YEARS, CronRule, cron_engine
from services.model.cron_syntax import read_cron
from services.model.wallclock import next_instant

# (low, high) of second, minute, hour, day-of-month, month, day-of-week.
RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _item(rng: random.Random, low: int, high: int) -> str:
    kind = rng.random()
    a = rng.randint(low, high - 1)
    if kind < 0.35:
        return str(rng.randint(low, high))
    if kind < 0.6:
        return f"{a}-{rng.randint(a + 1, high)}"
    if kind < 0.8:
        return f"{a}-{rng.randint(a + 1, high)}/{rng.randint(1, 5)}"
    return f"{low}-{high}"  # every value, written without a star


def _field(rng: random.Random, low: int, high: int) -> str:
    roll = rng.random()
    if roll < 0.3:
        return "*"
    if roll < 0.45:
        return f"*/{rng.randint(1, max(1, (high - low) // 2))}"
    return ",".join(_item(rng, low, high) for _ in range(rng.choice((1, 1, 1, 2, 3))))


def random_expression(rng: random.Random) -> tuple[str, bool]:
    seconds_first = rng.random() < 0.3
    fields = [_field(rng, low, high) for low, high in RANGES]
    if not seconds_first:
        fields = fields[1:]
    return " ".join(fields), seconds_first


def croniter_next(expression: str, seconds_first: bool, after: datetime) -> datetime | None:
    it = croniter(
        expression,
        after,
        second_at_beginning=seconds_first,
        max_years_between_matches=CRON_SEARCH_YEARS,
    )
    try:
        found: datetime = it.get_next(datetime)
    except CroniterBadDateError:
        return None
    return found


def test_random_plain_expressions_match_croniter() -> None:
    rng = random.Random(19)
    checked = 0
    for _ in range(500):
        expression, seconds_first = random_expression(rng)
        plain = plain_cron(expression, seconds_first)
        if plain is None:
            continue
        croniter.expand(expression, second_at_beginning=seconds_first)  # croniter accepts it
        checked += 1
        for _ in range(2):
            moment = datetime(2000, 1, 1) + timedelta(seconds=rng.randrange(40 * 365 * 86400))
            for _ in range(3):
                expected = croniter_next(expression, seconds_first, moment)
                got = plain.next_after(moment, CRON_SEARCH_YEARS)
                assert got == expected, (expression, seconds_first, moment)
                if expected is None:
                    break
                moment = expected
    assert checked > 400  # the generator stays inside the plain syntax nearly always


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 0 * * 1", datetime(2026, 3, 4), datetime(2026, 3, 9)),  # Mondays only (AND)
        ("0 0 1-31 * 1", datetime(2026, 3, 4), datetime(2026, 3, 5)),  # every day (OR)
        ("0 0 13 * 5", datetime(2026, 3, 4), datetime(2026, 3, 6)),  # the 13th or a Friday
        ("0 0 31 * *", datetime(2026, 4, 1), datetime(2026, 5, 31)),  # April has no 31st
        ("0 0 29 2 *", datetime(2026, 1, 1), datetime(2028, 2, 29)),
        ("30 */5 * * * *", datetime(2026, 1, 1, 0, 0, 30), datetime(2026, 1, 1, 0, 5, 30)),
        ("0 0 */2 */3 *", datetime(2026, 1, 31), datetime(2026, 4, 1)),
    ],
)
def test_known_answers(expression: str, after: datetime, expected: datetime) -> None:
    seconds_first = len(expression.split()) == 6
    plain = plain_cron(expression, seconds_first)
    assert plain is not None
    assert plain.next_after(after, CRON_SEARCH_YEARS) == expected
    assert croniter_next(expression, seconds_first, after) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 * * mon",  # names
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#3",
        "0 0 ? * 1",
        "0 0 * * 7",  # Sunday as 7
        "5/15 * * * *",
        "30-10 * * * *",  # reversed
        "0 0 30 2 *",  # a day February lacks: croniter's search decides
        "0 0 12 * * ? 2027",  # a year field
        "*/0 * * * *",
        "0 0 * * 5-5",  # croniter reads a-a as '*'
        "0 24 * * *",
    ],
)
def test_everything_else_stays_with_croniter(expression: str) -> None:
    assert plain_cron(expression, len(expression.split()) > 5) is None


@dataclass(frozen=True)
class CroniterRule:
    """The same expression searched by croniter itself, as a wall-clock rule."""

    expression: str
    seconds_first: bool
    real_instants: bool

    def next_local(self, after: datetime) -> datetime | None:
        return croniter_next(self.expression, self.seconds_first, after)


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo"]
)
def test_fire_instants_across_dst_transitions_match_croniter(zone: str) -> None:
    rng = random.Random(zone)
    tz = ZoneInfo(zone)
    for _ in range(25):
        expression, seconds_first = random_expression(rng)
        rule = read_cron(expression)
        if not isinstance(rule, CronRule) or plain_cron(expression, seconds_first) is None:
            continue
        assert cron_engine(rule.expression, rule.seconds_first, rule.search_years) is not None
        reference = CroniterRule(rule.expression, rule.seconds_first, rule.real_instants)
        for year in (2025, 2026):
            for month in (3, 4, 10, 11):  # the northern and southern transitions
                moment = datetime(year, month, 1, tzinfo=UTC) + timedelta(
                    seconds=rng.randrange(30 * 86400)
                )
                for _ in range(4):
                    expected = next_instant(reference, tz, moment)
                    assert next_instant(rule, tz, moment) == expected, (expression, moment)
                    if expected is None:
                        break
                    moment = expected
