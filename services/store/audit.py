"""The `schedule_audit` table's store, and the actor its trigger records.

The trigger (migration 004) writes one row per configuration change of `schedules`, whoever
made it; writers name themselves with `acting_as`, inside the transaction of their write.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID

import structlog

from database.connection import DatabaseConnection, Session
from database.queries import load_queries
from services.errors import InvalidCursor, SchedulerError
from services.model.records import AuditEntry
from services.store.arguments import as_instant
from services.store.paging import MAX_PAGE, decode_cursor, encode_cursor, page_limit

__all__ = ["MAX_PAGE", "SYNC_ACTOR", "AuditStore", "acting_as"]

_SQL = load_queries("schedule_audit")
log = structlog.get_logger(__name__)
SYNC_ACTOR = "sync"


@contextmanager
def acting_as(db: DatabaseConnection, actor: str | None) -> Iterator[Session]:
    """One transaction whose schedule changes the audit trail records as `actor` (`cli:<user>`,
    `api:<token name>`, `sync`); None leaves the trigger's default, `sql:<session_user>`."""
    with db.transaction() as tx:
        if actor is not None:
            if not isinstance(actor, str) or not actor.strip():
                raise SchedulerError(f"actor must be a non-empty string, got {actor!r}")
            tx.execute(_SQL["set_actor"], {"actor": actor})
        yield tx


def _before_id(cursor: str) -> int:
    (audit_id,) = decode_cursor(cursor, (int,))
    if audit_id < 1:
        raise InvalidCursor(cursor)
    return int(audit_id)


class AuditStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def list(
        self,
        schedule_id: UUID | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[AuditEntry], str | None]:
        """A page of audit rows, newest first, and the cursor of the next page (None: the last).
        Keyset paging by audit_id: rows written meanwhile never shift a page. `since` must be
        timezone-aware, as for the executions' pages."""
        limit = page_limit(limit)
        rows = self.db.fetch_all(
            _SQL["list_audit"],
            {
                "schedule_id": schedule_id,
                "actor": actor,
                "since": None if since is None else as_instant(since, "since"),
                "before_id": None if cursor is None else _before_id(cursor),
                "limit": limit + 1,
            },
        )
        items = [AuditEntry.from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor([items[-1].audit_id]) if len(rows) > limit else None
        return items, next_cursor

    def prune(self, days: float, *, batch_size: int = 5000) -> int:
        """Delete audit rows older than `days`, in autocommit batches; return the count."""
        if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days):
            raise SchedulerError(f"days must be a finite number >= 0, got {days!r}")
        if days < 0:
            raise SchedulerError(f"days must be a finite number >= 0, got {days!r}")
        cutoff: datetime = self.db.fetch_value(_SQL["audit_cutoff"], {"days": float(days)})
        total = 0
        while True:
            deleted = self.db.execute(
                _SQL["delete_old_audit_batch"], {"cutoff": cutoff, "batch_size": batch_size}
            )
            total += deleted
            if deleted < batch_size:
                break
        log.info("audit.pruned", deleted=total, days=days, cutoff=cutoff)
        return total
