"""The management API's reads of `job_executions`: keyset pages of runs, and statistics with
duration percentiles. `JobHistory` (store/history.py) hands both out.

A page is ordered newest first by (started_at, execution_id), and its cursor holds the last
row's pair: the next page starts strictly below it, so rows inserted meanwhile (they are newer)
or deleted never shift or repeat a row of a later page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import SchedulerError
from services.model.records import Execution
from services.model.vocabulary import (
    FAILED_STATUSES,
    RUN_STATUSES,
    SUCCESSFUL_STATUSES,
    ExecutionStatus,
)
from services.store.arguments import as_instant, as_status, as_trigger, as_uuid
from services.store.paging import decode_cursor, encode_cursor, page_limit

__all__ = ["ExecutionPages"]

_SQL = load_queries("job_history")
_CURSOR_KINDS = (datetime, UUID)
# `until` is exclusive: as a keyset bound it is (until, the smallest UUID).
_NIL_UUID = UUID(int=0)
_STATUS_RANK = {status.value: rank for rank, status in enumerate(ExecutionStatus)}


def _status_rank(status: str) -> int:
    return _STATUS_RANK.get(status, len(_STATUS_RANK))


def _in_status_order(seen: dict[str, int]) -> dict[str, int]:
    """In the vocabulary's order, whatever order jsonb or GROUP BY gave the statuses in."""
    return dict(sorted(seen.items(), key=lambda item: _status_rank(item[0])))


def _values(statuses: frozenset[ExecutionStatus]) -> list[str]:
    return sorted(s.value for s in statuses)


class ExecutionPages:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def page(
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
        """Runs matching every filter given, newest first, and the next page's cursor (None on
        the last page). `statuses`: any of them (an empty list filters nothing); `since` is
        inclusive and `until` exclusive, on started_at; both timezone-aware."""
        limit = page_limit(limit)
        before: tuple[datetime, UUID] | None = None
        if cursor is not None:
            before_at, before_id = decode_cursor(cursor, _CURSOR_KINDS)
            before = (before_at, before_id)
        if until is not None:
            bound = (as_instant(until, "until"), _NIL_UUID)
            before = bound if before is None else min(before, bound)
        if isinstance(statuses, str):
            raise SchedulerError(f"statuses must be a list of statuses, got {statuses!r}")
        wanted = list(dict.fromkeys(as_status(s) for s in statuses)) if statuses else None
        if instance_id is not None and not isinstance(instance_id, str):
            raise SchedulerError(f"instance_id must be a string, got {instance_id!r}")
        rows = self.db.fetch_all(
            _SQL["page_executions"],
            {
                "before_at": None if before is None else before[0],
                "before_id": None if before is None else before[1],
                "since": None if since is None else as_instant(since, "since"),
                "schedule_id": None if schedule_id is None else as_uuid(schedule_id, "schedule id"),
                "statuses": wanted,
                "trigger": None if trigger is None else as_trigger(trigger),
                "instance_id": instance_id,
                "limit": limit + 1,
            },
            prepare=False,  # planned with its filters each time: see Session._cursor
        )
        items = [Execution.from_row(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return items, None
        last = items[-1]
        return items, encode_cursor((last.started_at, last.execution_id))

    def stats(self, *, days: float = 7, schedule_id: UUID | None = None) -> dict[str, Any]:
        """The runs started within the last `days` (> 0): the seven seed-001 keys of
        `JobHistory.get_execution_statistics`, the same in meaning, plus `p50_duration` and
        `p95_duration` (seconds, interpolated as percentile_cont does; None without a run
        that has a duration) and `by_status` (row count of every status seen, skipped and
        running included)."""
        if isinstance(days, bool) or not isinstance(days, int | float):
            raise SchedulerError(f"days must be a number, got {days!r}")
        if not math.isfinite(days) or days <= 0:
            raise SchedulerError(f"days must be a finite number > 0, got {days!r}")
        sid = None if schedule_id is None else as_uuid(schedule_id, "schedule id")
        return self.totals(float(days), sid)

    def totals(self, days: float, schedule_id: UUID | None) -> dict[str, Any]:
        """`stats` for arguments already checked (also behind get_execution_statistics)."""
        row = self.db.fetch_one(
            _SQL["execution_stats"],
            {
                "days": days,
                "schedule_id": schedule_id,
                "run_statuses": _values(RUN_STATUSES),
                "successful_statuses": _values(SUCCESSFUL_STATUSES),
                "failed_statuses": _values(FAILED_STATUSES),
            },
            prepare=False,  # with or without schedule_id, its own plan: see Session._cursor
        )
        assert row is not None  # an aggregate without GROUP BY always gives one row
        total, successful = row["total_executions"], row["successful"]
        seen: dict[str, int] = row["by_status"]
        return {
            "total_executions": total,
            "successful": successful,
            "failed": row["failed"],
            "success_rate": round(100.0 * successful / total, 2) if total else 0.0,
            "avg_duration": row["avg_duration"],
            "min_duration": row["min_duration"],
            "max_duration": row["max_duration"],
            "p50_duration": row["p50_duration"],
            "p95_duration": row["p95_duration"],
            "by_status": _in_status_order(seen),
        }

    def status_counts(self, hours: int) -> dict[str, int]:
        """Rows started within the last `hours`, by status (stats' by_status, cheaper)."""
        rows = self.db.fetch_all(_SQL["status_counts"], {"hours": int(hours)})
        return _in_status_order({row["status"]: int(row["n"]) for row in rows})
