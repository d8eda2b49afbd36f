"""Reading and pruning `job_executions`: the seed-001 history API plus the CLI's filters.

Statistics count runs, not rows: `skipped` rows (an occurrence that never ran) and `running` rows
(no outcome yet) stay out of `total_executions` and the rates, but are reported on their own.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from database.connection import DatabaseConnection, get_db_connection
from database.queries import load_queries
from services.errors import SchedulerError
from services.model.records import Execution
from services.model.vocabulary import ExecutionStatus
from services.process_wide import ProcessWide

__all__ = [
    "FAILED_STATUSES",
    "RUN_STATUSES",
    "SUCCESSFUL_STATUSES",
    "JobHistory",
    "get_job_history",
]

log = structlog.get_logger(__name__)
_SQL = load_queries("job_history")

# A run that happened and has an outcome; `cancelled` counts (it ran, then was stopped on request)
# but is neither a success nor a failure, so it lowers success_rate without raising `failed`.
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


def _uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise SchedulerError(f"{what} {value!r} is not a UUID") from None


def _limit(value: int | None, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SchedulerError(f"limit must be a positive integer, got {value!r}")
    return value


def _span(value: float, what: str) -> float:
    """A time window length (hours or days): a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchedulerError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise SchedulerError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _status(value: str) -> str:
    try:
        return ExecutionStatus(value).value
    except ValueError:
        allowed = ", ".join(s.value for s in ExecutionStatus)
        raise SchedulerError(f"status {value!r} is not one of: {allowed}") from None


class JobHistory:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def _executions(self, query: str, params: dict[str, Any] | None = None) -> list[Execution]:
        return [Execution.from_row(row) for row in self.db.fetch_all(query, params)]

    def get_recent_executions(
        self, hours: float = 24, *, limit: int | None = None
    ) -> list[Execution]:
        """Runs started within the last `hours`, newest first; `limit=None` means all."""
        params = {"hours": _span(hours, "hours"), "limit": _limit(limit, optional=True)}
        return self._executions(_SQL["recent_executions"], params)

    def get_executions_by_schedule(
        self, schedule_id: UUID | str, *, limit: int | None = 100
    ) -> list[Execution]:
        """One schedule's runs, newest first; `limit=None` means all."""
        params = {
            "schedule_id": _uuid(schedule_id, "schedule id"),
            "limit": _limit(limit, optional=True),
        }
        return self._executions(_SQL["executions_by_schedule"], params)

    def find_executions(
        self,
        *,
        schedule_id: UUID | str | None = None,
        status: str | None = None,
        hours: float | None = None,
        limit: int = 50,
    ) -> list[Execution]:
        """Runs matching every filter given (the CLI's `history`), newest first."""
        params = {
            "schedule_id": None if schedule_id is None else _uuid(schedule_id, "schedule id"),
            "status": None if status is None else _status(status),
            "hours": None if hours is None else _span(hours, "hours"),
            "limit": _limit(limit, optional=False),
        }
        return self._executions(_SQL["find_executions"], params)

    def get_execution(self, execution_id: UUID | str) -> Execution | None:
        row = self.db.fetch_one(
            _SQL["get_execution"], {"execution_id": _uuid(execution_id, "execution id")}
        )
        return None if row is None else Execution.from_row(row)

    def get_running_executions(self) -> list[Execution]:
        """Runs still marked `running`, oldest first."""
        return self._executions(_SQL["running_executions"])

    def get_execution_statistics(
        self, days: float = 7, *, schedule_id: UUID | str | None = None
    ) -> dict[str, Any]:
        """Outcome counts and durations of runs started within the last `days`.

        - total_executions: runs with an outcome (completed, failed, timed_out, abandoned,
          cancelled); `skipped` (never ran) and `running` (no outcome yet) are reported apart.
        - successful: completed. failed: failed + timed_out + abandoned.
        - success_rate: 100 * successful / total_executions, rounded to 2 decimals; 0.0 if none.
        - avg/min/max_duration: seconds over those runs' recorded durations; None when none.
        - extra keys: cancelled, skipped, running, by_status (every status, zeros included).
        """
        params = {
            "days": _span(days, "days"),
            "schedule_id": None if schedule_id is None else _uuid(schedule_id, "schedule id"),
        }
        rows = self.db.fetch_all(_SQL["status_totals"], params)
        by_status = {status.value: 0 for status in ExecutionStatus}
        timed_runs = 0
        total_duration = 0.0
        minimum: float | None = None
        maximum: float | None = None
        for row in rows:
            by_status[row["status"]] = row["runs"]
            if row["status"] not in RUN_STATUSES or not row["timed_runs"]:
                continue
            timed_runs += row["timed_runs"]
            total_duration += row["total_duration"]
            minimum = row["min_duration"] if minimum is None else min(minimum, row["min_duration"])
            maximum = row["max_duration"] if maximum is None else max(maximum, row["max_duration"])
        total = sum(by_status[s] for s in RUN_STATUSES)
        successful = sum(by_status[s] for s in SUCCESSFUL_STATUSES)
        return {
            "total_executions": total,
            "successful": successful,
            "failed": sum(by_status[s] for s in FAILED_STATUSES),
            "success_rate": round(100.0 * successful / total, 2) if total else 0.0,
            "avg_duration": total_duration / timed_runs if timed_runs else None,
            "min_duration": minimum,
            "max_duration": maximum,
            "cancelled": by_status[ExecutionStatus.CANCELLED],
            "skipped": by_status[ExecutionStatus.SKIPPED],
            "running": by_status[ExecutionStatus.RUNNING],
            "by_status": by_status,
        }

    def cleanup_old_executions(self, days: float = 90, *, batch_size: int = 5000) -> int:
        """Delete finished runs that started (and ended) more than `days` ago; return the count.

        `running` rows are never touched. Each batch is one autocommit DELETE of at most
        `batch_size` rows, so no long transaction holds locks or bloats WAL; rows locked by a
        concurrent cleaner are skipped and left for the next pass.
        """
        days = _span(days, "days")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SchedulerError(f"batch_size must be a positive integer, got {batch_size!r}")
        # One cutoff for the whole pass, so that rows ageing meanwhile cannot keep it going.
        cutoff: datetime = self.db.fetch_value(_SQL["cleanup_cutoff"], {"days": days})
        total = 0
        batches = 0
        while True:
            deleted = self.db.execute(
                _SQL["delete_old_batch"], {"cutoff": cutoff, "batch_size": batch_size}
            )
            if deleted:
                batches += 1
                total += deleted
                log.debug("job_history.cleanup_batch", batch=batches, deleted=deleted)
            if deleted < batch_size:
                break
        log.info("job_history.cleanup", deleted=total, batches=batches, days=days, cutoff=cutoff)
        return total


def _default_history() -> JobHistory:
    return JobHistory(get_db_connection())


_history: ProcessWide[JobHistory] = ProcessWide(_default_history)


def get_job_history() -> JobHistory:
    """The process-wide history over the process-wide pool."""
    return _history.get()
