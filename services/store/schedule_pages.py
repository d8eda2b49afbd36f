"""Keyset pages of `schedules` for the REST API: filters, three sort orders, opaque cursors.

A cursor holds the sort key and schedule_id of the last row handed out; the next page starts
strictly after it. Rows inserted or deleted meanwhile never shift a page: a row appears once, in
its place, whichever page it falls on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import InvalidCursor, SchedulerError
from services.model.records import Schedule
from services.store.paging import MAX_PAGE, decode_cursor, encode_cursor, page_limit

__all__ = ["MAX_PAGE", "SORTS", "ScheduleFilter", "page_schedules"]

_SQL = load_queries("schedules")
SORTS = ("created_at", "next_run", "domain")
_NIL = UUID(int=0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
            "q": contains(self.q) if self.q else None,
        }


def contains(term: str) -> str:
    """The LIKE pattern of a substring: `term` with its wildcards and escape character escaped,
    between two `%` (LIKE, unlike strpos, can use the trigram index of domain and name)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Each sort's cursor fields: the sort's name (a cursor of one order is refused by another), its
# key, schedule_id. A row without next_run sorts last: (1, epoch) stands for "infinity".
_CURSOR_KINDS: dict[str, tuple[type, ...]] = {
    "created_at": (str, datetime, UUID),
    "domain": (str, str, UUID),
    "next_run": (str, int, datetime, UUID),
}


def _cursor_of(sort: str, schedule: Schedule) -> str:
    if sort == "domain":
        return encode_cursor([sort, schedule.domain, schedule.schedule_id])
    if sort == "created_at":
        assert schedule.created_at is not None  # NOT NULL DEFAULT now()
        return encode_cursor([sort, schedule.created_at, schedule.schedule_id])
    moment = schedule.next_run
    return encode_cursor([sort, int(moment is None), moment or _EPOCH, schedule.schedule_id])


def _after(sort: str, cursor: str | None) -> dict[str, Any]:
    """The query's lower bound: below every row for the first page, else the cursor's row."""
    if cursor is None:
        key: dict[str, Any] = (
            {"after_text": ""} if sort == "domain" else {"after_time": "-infinity"}
        )
        return {**key, "after_id": _NIL}
    values = decode_cursor(cursor, _CURSOR_KINDS[sort])
    if values[0] != sort:
        raise InvalidCursor(cursor)
    if sort == "domain":
        return {"after_text": values[1], "after_id": values[2]}
    if sort == "created_at":
        return {"after_time": values[1], "after_id": values[2]}
    if values[1] not in (0, 1):
        raise InvalidCursor(cursor)
    return {"after_time": "infinity" if values[1] else values[2], "after_id": values[3]}


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
    params = {**where.params(), **_after(sort, cursor), "limit": page_limit(limit) + 1}
    # Planned with its filters on every call (see Session._cursor): prepared, the next_run
    # statement got a generic plan on tables of 1,000-10,000 rows, whose seq scan ignores the
    # tags index; and the generic plans of the other two sort a quarter of the table.
    rows = db.fetch_all(_SQL[f"page_schedules_by_{sort}"], params, prepare=False)
    items = [Schedule.from_row(row) for row in rows[:limit]]
    next_cursor = _cursor_of(sort, items[-1]) if len(rows) > limit else None
    return items, next_cursor
