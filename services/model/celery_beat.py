"""django-celery-beat's PeriodicTask rows mapped onto `celery` schedules (pure: no I/O).

A crontab becomes `cron` with its five fields and its zone, an interval becomes `interval` in
seconds, minutes or hours, a clocked task becomes `once`. Solar events have no counterpart here
and are reported, never guessed. The task's name is kept as the schedule's `name` (and its
domain_config_id is derived from it), which is how a second import recognises rows it made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

IMPORT_TAG = "celery-beat"
DEFAULT_DOMAIN = "celery-beat"
# Interval periods beat knows, as time_config keys and factors (days have no key of their own).
_PERIODS: dict[str, tuple[str, int]] = {
    "seconds": ("seconds", 1),
    "minutes": ("minutes", 1),
    "hours": ("hours", 1),
    "days": ("hours", 24),
}


@dataclass(frozen=True)
class BeatTask:
    """One PeriodicTask row with its schedule's columns (None where it has no such schedule)."""

    name: str
    task: str
    args: str | None
    kwargs: str | None
    queue: str | None
    enabled: bool
    one_off: bool
    start_time: datetime | None
    expires: datetime | None
    description: str | None = None
    crontab: tuple[str, str, str, str, str] | None = None  # minute hour dom month dow
    crontab_timezone: str | None = None
    interval_every: int | None = None
    interval_period: str | None = None
    clocked_time: datetime | None = None
    solar_event: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BeatTask:
        crontab = None
        if row.get("cron_minute") is not None:
            crontab = (
                str(row["cron_minute"]),
                str(row["cron_hour"]),
                str(row["cron_day_of_month"]),
                str(row["cron_month_of_year"]),
                str(row["cron_day_of_week"]),
            )
        return cls(
            name=row["name"],
            task=row["task"],
            args=row.get("args"),
            kwargs=row.get("kwargs"),
            queue=row.get("queue"),
            enabled=bool(row["enabled"]),
            one_off=bool(row.get("one_off")),
            start_time=row.get("start_time"),
            expires=row.get("expires"),
            description=row.get("description"),
            crontab=crontab,
            crontab_timezone=row.get("cron_timezone"),
            interval_every=row.get("interval_every"),
            interval_period=row.get("interval_period"),
            clocked_time=row.get("clocked_time"),
            solar_event=row.get("solar_event"),
        )


@dataclass(frozen=True)
class PlannedSchedule:
    """What one PeriodicTask becomes: the schedule to create, or why there is none."""

    name: str
    task: str
    frequency: str | None = None
    time_config: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    skipped: str | None = None  # the reason it cannot be imported

    @property
    def domain_config_id(self) -> UUID:
        # Derived from the name, so the same task gets the same id on every import.
        return uuid5(NAMESPACE_URL, f"django-celery-beat:{self.name}")


def _json_field(raw: str | None, kind: type, label: str) -> Any:
    if raw is None or not raw.strip():
        return kind()
    value = json.loads(raw)
    if not isinstance(value, kind):
        raise ValueError(f"{label} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _timing(task: BeatTask) -> tuple[str, dict[str, Any]] | str:
    """(frequency, time_config) or the reason the schedule kind has no counterpart."""
    if task.solar_event is not None:
        return f"solar schedule ({task.solar_event}) is not importable: no sun-based frequency"
    if task.clocked_time is not None:
        return "once", {"run_at": task.clocked_time.isoformat()}
    if task.one_off:
        return "one_off is only importable with a clocked schedule (as frequency once)"
    if task.crontab is not None:
        config: dict[str, Any] = {"expression": " ".join(task.crontab)}
        if task.crontab_timezone:
            config["timezone"] = task.crontab_timezone
        return "cron", config
    if task.interval_every is not None and task.interval_period is not None:
        unit = _PERIODS.get(task.interval_period)
        if unit is None:
            return f"interval period {task.interval_period!r} is not importable (use seconds+)"
        if task.interval_every < 1:
            return f"interval every={task.interval_every} is not a positive period"
        key, factor = unit
        return "interval", {key: task.interval_every * factor}
    return "the task has no schedule (no crontab, interval, clocked or solar row)"


def plan_schedule(task: BeatTask) -> PlannedSchedule:
    timing = _timing(task)
    if isinstance(timing, str):
        return PlannedSchedule(task.name, task.task, skipped=timing)
    frequency, time_config = timing
    if task.start_time is not None and frequency != "once":
        time_config["start_date"] = task.start_time.isoformat()
    if task.expires is not None and frequency != "once":
        time_config["end_date"] = task.expires.isoformat()
    try:
        args = _json_field(task.args, list, "args")
        kwargs = _json_field(task.kwargs, dict, "kwargs")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        return PlannedSchedule(task.name, task.task, skipped=f"unreadable arguments: {exc}")
    payload: dict[str, Any] = {"task": task.task, "args": args, "kwargs": kwargs}
    if task.queue:
        payload["queue"] = task.queue
    return PlannedSchedule(
        task.name,
        task.task,
        frequency=frequency,
        time_config=time_config,
        payload=payload,
        enabled=task.enabled,
    )
