"""Reading and pruning `job_executions`: the seed-001 history API, the CLI's filters, and the
management API's pages and statistics (kept in store/execution_pages.py, handed out here).

Statistics count runs, not rows: `skipped` rows (an occurrence that never ran) and `running` rows
(no outcome yet) stay out of `total_executions` and the rates, but are reported on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

import structlog

from database.connection import DatabaseConnection, get_db_connection
from database.queries import load_queries
from services.errors import SchedulerError
from services.model.records import Execution
from services.model.vocabulary import (
    FAILED_STATUSES,
    RUN_STATUSES,
    SUCCESSFUL_STATUSES,
    ExecutionStatus,
)
from services.process_wide import ProcessWide
from services.store.arguments import as_status, as_uuid
from services.store.execution_pages import ExecutionPages

__all__ = [
    "FAILED_STATUSES",
    "RUN_STATUSES",
    "SUCCESSFUL_STATUSES",
    "JobHistory",
    "get_job_history",
]

log = structlog.get_logger(__name__)
_SQL = load_queries("job_history")
# get_execution_statistics' keys as seed 001 documents them.
SEED_STATISTICS = (
    "total_executions",
    "successful",
    "failed",
    "success_rate",
    "avg_duration",
    "min_duration",
    "max_duration",
)


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


class JobHistory:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db
        self._pages = ExecutionPages(db)

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
            "schedule_id": as_uuid(schedule_id, "schedule id"),
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
            "schedule_id": None if schedule_id is None else as_uuid(schedule_id, "schedule id"),
            "status": None if status is None else as_status(status),
            "hours": None if hours is None else _span(hours, "hours"),
            "limit": _limit(limit, optional=False),
        }
        return self._executions(_SQL["find_executions"], params)

    def get_execution(self, execution_id: UUID | str) -> Execution | None:
        row = self.db.fetch_one(
            _SQL["get_execution"], {"execution_id": as_uuid(execution_id, "execution id")}
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
        sid = None if schedule_id is None else as_uuid(schedule_id, "schedule id")
        # The same statement as execution_stats, so the two never differ in meaning.
        stats = self._pages.totals(_span(days, "days"), sid)
        seen = stats["by_status"]
        by_status = {status.value: seen.get(status.value, 0) for status in ExecutionStatus}
        return {
            **{key: stats[key] for key in SEED_STATISTICS},
            "cancelled": by_status[ExecutionStatus.CANCELLED],
            "skipped": by_status[ExecutionStatus.SKIPPED],
            "running": by_status[ExecutionStatus.RUNNING],
            "by_status": by_status,
        }

    def page_executions(
        self,
        *,
        schedule_id: UUID | None = None,
        statuses: Sequence[str] | None = None,
        trigger: str | None = None,
        instance_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Execution], str | None]:
        """A page of runs matching every filter given, newest first, and the cursor of the
        next page (None: the last). Keyset paging on (started_at, execution_id): rows inserted
        or deleted meanwhile never shift or repeat a row of a later page. `statuses`: any of
        them; `since` inclusive, `until` exclusive (on started_at, timezone-aware); `limit`
        1-500. SchedulerError for a bad argument, InvalidCursor for a cursor not handed out."""
        return self._pages.page(
            schedule_id=schedule_id,
            statuses=statuses,
            trigger=trigger,
            instance_id=instance_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    def execution_stats(
        self, *, days: float = 7, schedule_id: UUID | None = None
    ) -> dict[str, Any]:
        """The runs started within the last `days` (finite, > 0), all or one schedule's: the
        seven keys of get_execution_statistics (same meaning), `p50_duration` and
        `p95_duration` (seconds, percentile_cont over the runs with a duration; None without
        one) and `by_status` (count of every status seen in the window, skipped and running
        included)."""
        return self._pages.stats(days=days, schedule_id=schedule_id)

    def status_counts(self, hours: int = 24) -> dict[str, int]:
        """Rows started within the last `hours`, by status, for every status seen, in the
        vocabulary's order (what execution_stats reports as `by_status`, for less work)."""
        return self._pages.status_counts(hours)

    def daily_outcomes(self, schedule_id: UUID, days: int = 35) -> list[tuple[date, str, int]]:
        """(UTC day, status, runs) of one schedule over the last `days` days, oldest first."""
        rows = self.db.fetch_all(
            _SQL["daily_outcomes"], {"schedule_id": schedule_id, "days": int(days)}
        )
        return [(row["day"], row["status"], int(row["runs"])) for row in rows]

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
