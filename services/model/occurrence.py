"""The occurrence and its records: what is due, what was claimed, what a run ended with.

Pure values shared by the watch side (which creates occurrences) and the engine (which runs them),
so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from services.model.records import Schedule
from services.model.spec import ScheduleSpec
from services.model.vocabulary import RunTrigger


@dataclass(frozen=True, slots=True)
class LoadedSchedule:
    """A schedule row with its parsed time specification, as loaded into the scheduler."""

    schedule: Schedule
    spec: ScheduleSpec

    @property
    def schedule_id(self) -> UUID:
        return self.schedule.schedule_id


@dataclass(frozen=True)
class Occurrence:
    loaded: LoadedSchedule
    scheduled_for: datetime  # the occurrence: identical on every instance
    due_at: datetime  # when it was meant to start (a retry's due time differs from scheduled_for)
    attempt: int = 1
    trigger: RunTrigger = RunTrigger.SCHEDULE
    job_id: str = ""
    # The execution id of a claim whose answer was lost with the connection (a crash or a
    # failover mid-commit): it may have been committed. Sent again under the same id, the claim
    # is recognised as ours instead of looking like another run's, which would leave that row
    # `running` for ever and the occurrence unrun.
    claim_id: UUID | None = None

    def key(self) -> OccurrenceKey:
        s = self.loaded.schedule
        return OccurrenceKey(
            schedule_id=s.schedule_id,
            scheduled_for=self.scheduled_for,
            attempt=self.attempt,
            trigger=self.trigger.value,
            job_id=self.job_id or str(s.schedule_id),
            domain=s.domain,
            domain_config_id=s.domain_config_id,
        )


@dataclass(frozen=True)
class Claim:
    execution_id: UUID
    fencing_token: int
    started_at: datetime


@dataclass(frozen=True)
class OccurrenceKey:
    """One (schedule, occurrence, attempt), plus the descriptive columns its row carries."""

    schedule_id: UUID
    scheduled_for: datetime
    attempt: int
    trigger: str
    job_id: str
    domain: str
    domain_config_id: UUID


@dataclass(frozen=True)
class FinalResult:
    execution_id: UUID
    fencing_token: int
    status: str
    duration_seconds: float
    error_message: str | None
    error_details: dict[str, Any] | None
    metadata: dict[str, Any] | None
    scan_id: UUID | None
    next_run: datetime | None


@dataclass(frozen=True)
class RunReport:
    execution_id: UUID | None
    status: str  # an ExecutionStatus value, or "conflict" when another run had the occurrence
    detail: str = ""


def lock_token(instance_id: str, execution_id: UUID, occurrence: Occurrence) -> str:
    """instance|execution|occurrence|attempt: says who holds a lock and for which occurrence."""
    stamp = occurrence.scheduled_for.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{instance_id}|{execution_id}|{stamp}|{occurrence.attempt}"


def retry_job_id(schedule_id: object, scheduled_for: datetime, attempt: int) -> str:
    """The APScheduler job id of a retry: the same on every instance, so one is never doubled."""
    return f"retry:{schedule_id}:{scheduled_for.strftime('%Y%m%dT%H%M%S')}:{attempt}"


def token_occurrence(token: str) -> tuple[str, str, str, str] | None:
    parts = token.split("|")
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


def misfire_grace(loaded: LoadedSchedule, default: float) -> float:
    """Seconds an occurrence of this schedule may start late: its own, else the default."""
    grace = loaded.spec.misfire_grace_time
    return default if grace is None else grace


class ScheduleCatalog(Protocol):
    """The schedules loaded into this instance (the watch side), as the engine sees them."""

    def get(self, schedule_id: UUID) -> LoadedSchedule | None: ...

    def parse(self, schedule: Schedule) -> LoadedSchedule: ...


class OccurrenceSink(Protocol):
    """Where the watch side sends occurrences it finds due at load (catch-up): the engine."""

    def submit(self, occ: Occurrence) -> None: ...

    def skip(self, occ: Occurrence, reason: str, kind: str) -> object: ...
