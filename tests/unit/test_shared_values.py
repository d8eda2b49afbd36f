"""Rows whose configuration texts differ still share their equal frozen parts (issue 19)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.model.spec import parse_schedule


def test_equal_rules_instants_and_periods_are_one_object() -> None:
    start = "2030-01-02T03:04:05+00:00"
    daily = [
        parse_schedule("daily", {"hour": 2, "minute": 30, "start_date": start, **extra})
        for extra in ({}, {"jitter": 5}, {"max_retries": 1})
    ]
    assert daily[0].rule is daily[1].rule is daily[2].rule
    assert daily[0].start_date is daily[1].start_date is daily[2].start_date
    assert daily[0].start_date == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    intervals = [parse_schedule("interval", {"minutes": 60, **e}) for e in ({}, {"jitter": 1})]
    assert intervals[0].period is intervals[1].period


def test_different_values_stay_apart() -> None:
    a = parse_schedule("weekly", {"day": "mon", "hour": 2})
    b = parse_schedule("weekly", {"day": "tue", "hour": 2})
    c = parse_schedule("monthly", {"day": 1, "hour": 2})
    assert a.rule != b.rule and a.rule is not b.rule and c.rule != a.rule
