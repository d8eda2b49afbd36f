"""Shared vocabulary: execution statuses, run triggers, sources and job types (contract values)."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    QUEUED = "queued"  # waiting for an earlier run of its schedule (overlap policy, backfill)


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCHUP = "catchup"
    BACKFILL = "backfill"


class ScheduleSource(StrEnum):
    MANUAL = "manual"
    API = "api"


class JobType(StrEnum):
    HTTP = "http"
    COMMAND = "command"
    PYTHON = "python"
    NATS = "nats"
    CELERY = "celery"


class TokenRole(StrEnum):
    """What an API token may do: read GETs; write also changes schedules and runs; admin also
    manages tokens."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


# What the statistics count. A run happened and has an outcome; `cancelled` counts (it ran, then
# was stopped on request) but is neither a success nor a failure, so it lowers success_rate
# without raising `failed`. `skipped` (never ran), `queued` (not yet run) and `running` (no
# outcome yet) are not runs.
RUN_STATUSES = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.ABANDONED,
        ExecutionStatus.CANCELLED,
    }
)
SUCCESSFUL_STATUSES = frozenset({ExecutionStatus.COMPLETED})
FAILED_STATUSES = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABANDONED}
)
