"""Argument checks shared by the history reads: ids, statuses and triggers as callers (the CLI,
the API) give them become values, or a SchedulerError saying what is accepted."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from services.errors import SchedulerError
from services.model.vocabulary import ExecutionStatus, RunTrigger


def as_uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise SchedulerError(f"{what} {value!r} is not a UUID") from None


def as_status(value: str) -> str:
    try:
        return ExecutionStatus(value).value
    except ValueError:
        allowed = ", ".join(s.value for s in ExecutionStatus)
        raise SchedulerError(f"status {value!r} is not one of: {allowed}") from None


def as_trigger(value: str) -> str:
    try:
        return RunTrigger(value).value
    except ValueError:
        allowed = ", ".join(t.value for t in RunTrigger)
        raise SchedulerError(f"trigger {value!r} is not one of: {allowed}") from None


def as_instant(value: datetime, what: str) -> datetime:
    """A timezone-aware datetime: a naive one names no instant (PostgreSQL would read it in the
    session's time zone)."""
    if not isinstance(value, datetime):
        raise SchedulerError(f"{what} must be a datetime, got {value!r}")
    if value.utcoffset() is None:
        raise SchedulerError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value
