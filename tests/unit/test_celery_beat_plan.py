"""django-celery-beat rows mapped onto schedules: the pure part of import-celery-beat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.model.celery_beat import BeatTask, plan_schedule


def task(**kw: Any) -> BeatTask:
    defaults: dict[str, Any] = {
        "name": "t",
        "task": "proj.tasks.t",
        "args": "[]",
        "kwargs": "{}",
        "queue": None,
        "enabled": True,
        "one_off": False,
        "start_time": None,
        "expires": None,
    }
    return BeatTask(**{**defaults, **kw})


def test_start_time_and_expires_bound_the_schedule() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    end = datetime(2027, 6, 1, tzinfo=UTC)
    plan = plan_schedule(
        task(interval_every=5, interval_period="minutes", start_time=start, expires=end)
    )
    assert plan.frequency == "interval"
    assert plan.time_config == {
        "minutes": 5,
        "start_date": "2027-01-01T00:00:00+00:00",
        "end_date": "2027-06-01T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"interval_every": 500, "interval_period": "microseconds"}, "'microseconds'"),
        ({"crontab": ("*", "*", "*", "*", "*"), "one_off": True}, "one_off"),
        ({"solar_event": "sunset"}, "solar schedule (sunset)"),
        ({}, "no schedule"),
        ({"interval_every": 1, "interval_period": "hours", "args": "{bad"}, "unreadable"),
        ({"interval_every": 1, "interval_period": "hours", "kwargs": "[1]"}, "kwargs must be"),
    ],
)
def test_what_cannot_be_imported_says_why(fields: dict[str, Any], reason: str) -> None:
    plan = plan_schedule(task(**fields))
    assert plan.frequency is None
    assert plan.skipped is not None and reason in plan.skipped


def test_the_id_follows_the_name() -> None:
    a = plan_schedule(task(name="x", interval_every=1, interval_period="seconds"))
    b = plan_schedule(task(name="x", interval_every=9, interval_period="hours"))
    c = plan_schedule(task(name="y", interval_every=1, interval_period="seconds"))
    assert a.domain_config_id == b.domain_config_id != c.domain_config_id
