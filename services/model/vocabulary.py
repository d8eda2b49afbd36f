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


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCHUP = "catchup"


class ScheduleSource(StrEnum):
    MANUAL = "manual"
    API = "api"


class JobType(StrEnum):
    HTTP = "http"
    COMMAND = "command"
    PYTHON = "python"


class TokenRole(StrEnum):
    """What an API token may do: read GETs; write also changes schedules and runs; admin also
    manages tokens."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
