"""The overlap queue in `job_executions`: occurrences waiting as `queued` rows, and their start.

A queued row is written under the unique occurrence key with a fencing number, like a claim, so
it belongs to no instance: whichever instance holds the schedule's lock when the row's turn
comes turns it `running` (`start`, one statement that only one instance can win) and runs it.
The buffer limit is counted and kept under a per-schedule advisory lock, so two instances
queueing at once cannot both take the last place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.model.occurrence import Claim, OccurrenceKey

_SQL = load_queries("executions")


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A head of the queue: a waiting row that may be next for its schedule."""

    execution_id: UUID
    schedule_id: UUID
    scheduled_for: datetime
    attempt: int
    trigger: str
    job_id: str
    place: int  # 1 = first of its schedule's waiting rows
    backfill_running: int  # backfill runs of its schedule going now

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueuedRow:
        return cls(
            execution_id=row["execution_id"],
            schedule_id=row["schedule_id"],
            scheduled_for=row["scheduled_for"],
            attempt=row["attempt"],
            trigger=row["trigger"],
            job_id=row["job_id"] or str(row["schedule_id"]),
            place=int(row["place"]),
            backfill_running=int(row["backfill_running"]),
        )


class QueueStore:
    def __init__(self, db: DatabaseConnection, instance_id: str) -> None:
        self.db = db
        self.instance_id = instance_id

    def waiting(self, schedule_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Live occurrences waiting per schedule (a backfill's rows are not counted)."""
        if not schedule_ids:
            return {}
        rows = self.db.fetch_all(
            _SQL["queued_counts"], {"schedule_ids": [str(s) for s in set(schedule_ids)]}
        )
        return {row["schedule_id"]: int(row["waiting"]) for row in rows}

    def enqueue(
        self,
        key: OccurrenceKey,
        execution_id: UUID,
        *,
        limit: int,
        reason: str,
        details: dict[str, Any],
    ) -> bool | None:
        """Record an occurrence `queued` unless `limit` live ones already wait. True: queued;
        False: the queue is full; None: the occurrence already has a row (not skipped)."""
        params = {
            "execution_id": execution_id,
            "schedule_id": key.schedule_id,
            "job_id": key.job_id,
            "domain": key.domain,
            "domain_config_id": key.domain_config_id,
            "scheduled_for": key.scheduled_for,
            "attempt": key.attempt,
            "trigger": key.trigger,
            "instance_id": self.instance_id,
            "error_message": reason,
            "error_details": Jsonb(details),
        }
        with self.db.transaction() as tx:
            tx.fetch_one(_SQL["lock_schedule_queue"], {"schedule_id": key.schedule_id})
            row = tx.fetch_one(_SQL["queued_count"], {"schedule_id": key.schedule_id})
            if row is not None and int(row["waiting"]) >= limit:
                return False
            inserted = tx.fetch_one(_SQL["queue_occurrence"], params)
        return True if inserted is not None else None

    def heads(self, *, heads: int, limit: int = 500) -> list[QueuedRow]:
        rows = self.db.fetch_all(_SQL["queue_heads"], {"heads": heads, "limit": limit})
        return [QueuedRow.from_row(row) for row in rows]

    def start(self, execution_id: UUID) -> Claim | None:
        """Turn a queued row `running` for this instance (it holds the lock); None when another
        instance started it first."""
        row = self.db.fetch_one(
            _SQL["start_queued"], {"execution_id": execution_id, "instance_id": self.instance_id}
        )
        if row is None:
            return None
        return Claim(row["execution_id"], row["fencing_token"], row["started_at"])

    def drop(self, execution_id: UUID, reason: str) -> bool:
        row = self.db.fetch_one(
            _SQL["drop_queued"], {"execution_id": execution_id, "reason": reason}
        )
        return row is not None
