"""Keyset pages of `schedules` for the REST API: filters, three sort orders, opaque cursors.

A cursor holds the sort key and schedule_id of the last row handed out; the next page starts
strictly after it. Rows inserted or deleted meanwhile never shift a page: a row appears once, in
its place, whichever page it falls on.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import InvalidCursor, SchedulerError
from services.model.records import Schedule

__all__ = ["MAX_PAGE", "SORTS", "ScheduleFilter", "page_schedules"]

_SQL = load_queries("schedules")
MAX_PAGE = 500
SORTS = ("created_at", "next_run", "domain")
_NIL = UUID(int=0)
_NO_NEXT_RUN = "infinity"  # where rows without a next_run sort (the query's coalesce)


@dataclass(frozen=True, slots=True)
class ScheduleFilter:
    """Each field given must match; tags: every one listed must be present."""

    enabled: bool | None = None
    frequency: str | None = None
    job_type: str | None = None
    source: str | None = None
    last_status: str | None = None
    tags: tuple[str, ...] = ()
    q: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "frequency": self.frequency,
            "job_type": self.job_type,
            "source": self.source,
            "last_status": self.last_status,
            "tags": list(self.tags) or None,
            "q": self.q or None,
        }


def _sort_key(schedule: Schedule, sort: str) -> str:
    if sort == "domain":
        return schedule.domain
    moment = schedule.created_at if sort == "created_at" else schedule.next_run
    return _NO_NEXT_RUN if moment is None else moment.isoformat()


def encode_cursor(sort: str, schedule: Schedule) -> str:
    text = json.dumps([sort, _sort_key(schedule, sort), str(schedule.schedule_id)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[str, UUID]:
    """(sort key, schedule_id) after which the page starts; InvalidCursor for anything this
    module did not write, or wrote for another sort order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, key, schedule_id = json.loads(raw)
        if cursor_sort != sort or not isinstance(key, str):
            raise ValueError(sort)
        if sort != "domain" and key != _NO_NEXT_RUN:
            datetime.fromisoformat(key)
        return key, UUID(schedule_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, AttributeError):
        raise InvalidCursor(cursor) from None


def page_schedules(
    db: DatabaseConnection,
    where: ScheduleFilter,
    *,
    sort: str = "created_at",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Schedule], str | None]:
    """One page of schedules and the cursor of the next (None: this is the last page)."""
    if sort not in SORTS:
        raise SchedulerError(f"sort must be one of: {', '.join(SORTS)}, got {sort!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise SchedulerError(f"limit must be an integer 1-{MAX_PAGE}, got {limit!r}")
    key, after_id = ("", _NIL) if cursor is None else decode_cursor(cursor, sort)
    params = {**where.params(), "after_id": after_id, "limit": limit + 1}
    if sort == "domain":
        params["after_text"] = key
    else:
        params["after_time"] = key or "-infinity"
    # Planned with its filters on every call (see Session._cursor): prepared, the next_run
    # statement got a generic plan on tables of 1,000-10,000 rows, whose seq scan ignores the
    # tags index; and the generic plans of the other two sort a quarter of the table.
    rows = db.fetch_all(_SQL[f"page_schedules_by_{sort}"], params, prepare=False)
    items = [Schedule.from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(sort, items[-1]) if len(rows) > limit else None
    return items, next_cursor
