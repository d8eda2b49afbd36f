"""The REST API's bodies, in and out, as pydantic models: they are the OpenAPI document.

Input models check only the shape (JSON types, unknown keys refused). What a schedule's values
mean is checked by `validate_config`, the watcher's own rules, so a 422 says word for word
what `last_error` would say. Output models mirror the rows; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StrictBool,
)

from services.model.schedule_config import unstorable


def _plain_text(value: str) -> str:
    problem = unstorable(value, "text")
    if problem:
        raise ValueError(problem)
    return value


# RFC 3339's date-time (ISO 8601 with a UTC offset), the only form a query's time is read in:
# pydantic would also take a bare number as Unix seconds or milliseconds (it guesses which by
# size), a date alone, or a time without offset, which names no instant.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _date_time(value: object) -> object:
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        raise ValueError(
            "expected an ISO 8601 date-time with a UTC offset, e.g. 2030-01-01T00:00:00Z"
        )
    return value


def _utc(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


# Every string the API takes: PostgreSQL cannot store NUL or a lone surrogate.
Text = Annotated[str, AfterValidator(_plain_text)]
Note = Annotated[str, Field(max_length=1000), AfterValidator(_plain_text)]
UtcTime = Annotated[datetime, PlainSerializer(_utc, return_type=str)]
Instant = Annotated[datetime, BeforeValidator(_date_time)]  # a query's `since`, `until`


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleIn(_In):
    """A schedule to create (POST) or the whole of one (PUT)."""

    domain: Text = Field(description="what the job is about, e.g. example.com")
    frequency: Text = Field(description="cron, interval, once, hourly, daily, weekly, monthly")
    time_config: JsonValue = Field(description="a JSON object; its keys depend on frequency")
    domain_config_id: UUID | None = Field(None, description="default: a new UUID")
    name: Text | None = None
    enabled: StrictBool = True  # as PATCH and the watcher take it: 0 or "yes" is no boolean
    job_type: Text | None = Field(
        None, description="http, command, python, nats, celery (null: the default)"
    )
    payload: JsonValue = Field(default_factory=dict, description="a JSON object")
    profile_id: UUID | None = None
    tags: list[Text] = Field(default_factory=list)
    notify: JsonValue = Field(default_factory=dict, description="a JSON object")


class PauseIn(_In):
    note: Note | None = None


class SchedulerPauseIn(_In):
    note: Note = Field(min_length=1)


class BulkCreateIn(_In):
    items: list[ScheduleIn] = Field(min_length=1, max_length=1000)


class BulkOperationIn(_In):
    operation: Text = Field(description="pause, resume, delete or trigger")
    schedule_ids: list[UUID] | None = Field(None, max_length=10000)
    tag: Text | None = None
    note: Note | None = None


class TokenIn(_In):
    name: Text
    role: Text = "read"


class ScheduleOut(BaseModel):
    schedule_id: UUID
    domain_config_id: UUID
    domain: str
    name: str | None
    frequency: str
    time_config: JsonValue
    enabled: bool
    job_type: str | None
    payload: JsonValue
    profile_id: UUID | None
    source: str
    tags: list[str]
    notify: JsonValue
    next_run: UtcTime | None
    last_run: UtcTime | None
    last_status: str | None
    last_error: str | None
    config_hash: str
    created_at: UtcTime | None
    updated_at: UtcTime | None
    created_by: str | None
    paused_note: str | None
    paused_by: str | None
    paused_at: UtcTime | None


class ScheduleDetail(ScheduleOut):
    upcoming: list[UtcTime] = Field(description="the next 10 fire times")


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None


class ExecutionOut(BaseModel):
    execution_id: UUID
    schedule_id: UUID | None
    job_id: str
    domain: str
    domain_config_id: UUID
    status: str
    trigger: str
    attempt: int
    scheduled_for: UtcTime
    started_at: UtcTime
    completed_at: UtcTime | None
    duration_seconds: float | None
    error_message: str | None
    error_details: JsonValue | None
    metadata: JsonValue | None
    instance_id: str | None
    fencing_token: int | None


class ExecutionDetail(ExecutionOut):
    output_tail: str | None


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")  # the seed-001 keys and then some

    total_executions: int
    successful: int
    failed: int
    success_rate: float
    avg_duration: float | None
    min_duration: float | None
    max_duration: float | None
    p50_duration: float | None
    p95_duration: float | None
    by_status: dict[str, int]


class RequestAccepted(BaseModel):
    request_id: UUID


class BulkCreated(BaseModel):
    created: list[UUID]


class BulkDone(BaseModel):
    matched: int
    changed: int


class PauseState(BaseModel):
    paused: bool
    note: str | None
    paused_by: str | None
    paused_at: UtcTime | None


class SchedulerStatus(BaseModel):
    instances: list[dict[str, Any]]
    paused: PauseState


class TokenOut(BaseModel):
    name: str
    role: str
    created_at: UtcTime | None
    last_used_at: UtcTime | None
    revoked_at: UtcTime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once: only its SHA-256 is kept")


class AuditOut(BaseModel):
    audit_id: int
    schedule_id: UUID
    action: str
    actor: str
    changed_at: UtcTime
    changed_fields: list[str]
    before: JsonValue | None
    after: JsonValue | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class BackfillIn(_In):
    """POST /api/v1/schedules/{id}/backfill: the occurrences in [from, to) to run again."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: datetime = Field(alias="from", description="ISO 8601 with a zone; included")
    end: datetime = Field(alias="to", description="ISO 8601 with a zone; excluded")
    mode: Literal["missing", "failed", "all"] = "missing"
    dry_run: bool = False


class BackfillOccurrence(BaseModel):
    scheduled_for: str
    attempt: int
    execution_id: str | None  # None in a dry run (or queued meanwhile by another backfill)


class BackfillOut(BaseModel):
    schedule_id: str
    mode: str
    dry_run: bool
    considered: int  # the schedule's fire times in the range
    queued: int
    occurrences: list[BackfillOccurrence]

    model_config = ConfigDict(populate_by_name=True)


class ChannelIn(BaseModel):
    name: str = Field(description="1-64 of A-Z a-z 0-9 _ . : -")
    kind: Literal["webhook", "slack", "email"]
    target: JsonValue = Field(description='{"url": ...} (webhook, slack) or {"to": [...]} (email)')
    enabled: bool = True


class ChannelOut(BaseModel):
    name: str
    kind: str
    target: dict[str, Any] = Field(description="a URL shown by its host only: it may be secret")
    enabled: bool
    created_at: UtcTime | None
    updated_at: UtcTime | None


class ChannelTestOut(BaseModel):
    channel: str
    delivered: bool
    error: str | None


class NotificationOut(BaseModel):
    notification_id: int
    event_key: str
    channel: str
    event: str
    schedule_id: UUID | None
    execution_id: UUID | None
    status: str
    attempts: int
    next_attempt_at: UtcTime | None
    last_error: str | None
    digest_id: int | None
    created_at: UtcTime
    sent_at: UtcTime | None
    message: str | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None
