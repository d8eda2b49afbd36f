"""Which events a finished run, an invalid row or a missed deadline raises, and their bodies.

Pure. An event's key names what it is about (a run, a streak's N-th failure, an invalid
configuration, an occurrence), so the same event produced twice, by two instances or two
passes, is one row of the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from services.model.notify_rule import STREAK_PREFIX, NotifyRule
from services.store.notifications import PendingEvent

FAILURE_STATUSES = frozenset({"failed", "timed_out", "abandoned"})


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z` (as every other time the scheduler sends out)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _label(schedule: Mapping[str, Any]) -> str:
    return str(schedule.get("name") or schedule.get("domain") or schedule.get("schedule_id"))


def _when(moment: object) -> str | None:
    return format_utc(moment) if isinstance(moment, datetime) else None


def schedule_part(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "schedule_id": str(row["schedule_id"]),
        "name": row.get("name"),
        "domain": row.get("domain"),
        "frequency": row.get("frequency"),
    }


def execution_part(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "execution_id": str(row["execution_id"]),
        "status": row["status"],
        "scheduled_for": _when(row.get("scheduled_for")),
        "started_at": _when(row.get("started_at")),
        "completed_at": _when(row.get("completed_at")),
        "attempt": row.get("attempt"),
        "trigger": row.get("trigger"),
        "duration_seconds": row.get("duration_seconds"),
        "error_message": row.get("error_message"),
        "instance_id": row.get("instance_id"),
    }


def run_events(row: Mapping[str, Any], rule: NotifyRule) -> list[tuple[str, str, str]]:
    """(event, key, message) of each event a finished run raises under `rule`.

    `row` is a finished_between row: status, final_failure (no retry follows),
    previous_failed (a success's previous outcome was a final failure) and streak (the final
    failures in a row ending with this one)."""
    label = _label(row)
    execution = row["execution_id"]
    error = row.get("error_message") or row["status"]
    events: list[tuple[str, str, str]] = []
    status = row["status"]
    if status == "skipped" and rule.wants("skipped"):
        when = _when(row.get("scheduled_for"))
        events.append(("skipped", f"skipped:{execution}", f"{label}: {when} skipped: {error}"))
    elif status == "completed" and row.get("previous_failed") and rule.wants("recovered"):
        events.append(
            ("recovered", f"recovered:{execution}", f"{label} recovered: a run completed again")
        )
    elif status in FAILURE_STATUSES and row.get("final_failure"):
        if rule.wants("failed"):
            events.append(("failed", f"failed:{execution}", f"{label} {status}: {error}"))
        streak = int(row.get("streak") or 0)
        if streak in rule.streaks:
            name = f"{STREAK_PREFIX}{streak}"
            events.append(
                (name, f"{name}:{execution}", f"{label} failed {streak} times in a row: {error}")
            )
    return events


def for_channels(
    rule: NotifyRule,
    event: str,
    key: str,
    body: dict[str, Any],
    schedule_id: UUID | None,
    execution_id: UUID | None,
) -> list[PendingEvent]:
    return [
        PendingEvent(f"{key}:{channel}", channel, event, schedule_id, execution_id, body)
        for channel in rule.channels
    ]


def body(
    event: str, message: str, schedule: dict[str, Any], execution: dict[str, Any] | None
) -> dict[str, Any]:
    return {"event": event, "schedule": schedule, "execution": execution, "message": message}


def finished_run_events(row: Mapping[str, Any], rule: NotifyRule) -> list[PendingEvent]:
    schedule, execution = schedule_part(row), execution_part(row)
    pending: list[PendingEvent] = []
    for event, key, message in run_events(row, rule):
        pending += for_channels(
            rule,
            event,
            key,
            body(event, message, schedule, execution),
            row["schedule_id"],
            row["execution_id"],
        )
    return pending


def invalid_events(row: Mapping[str, Any], rule: NotifyRule) -> list[PendingEvent]:
    if not rule.wants("invalid"):
        return []
    message = f"{_label(row)} is invalid: {row.get('last_error') or 'see its last_error'}"
    key = f"invalid:{row['schedule_id']}:{row.get('config_hash') or ''}"
    payload = body("invalid", message, schedule_part(row), None)
    return for_channels(rule, "invalid", key, payload, row["schedule_id"], None)


def missed_events(
    row: Mapping[str, Any], rule: NotifyRule, occurrences: Sequence[datetime], within: float
) -> list[PendingEvent]:
    if not rule.wants("missed"):
        return []
    pending: list[PendingEvent] = []
    for occurrence in occurrences:
        when = format_utc(occurrence)
        message = f"{_label(row)}: no run completed within {within:g} s of its {when} occurrence"
        payload = body("missed", message, schedule_part(row), None)
        payload["occurrence"] = when
        key = f"missed:{row['schedule_id']}:{when}"
        pending += for_channels(rule, "missed", key, payload, row["schedule_id"], None)
    return pending
