"""Backfill: a schedule's past occurrences in [from, to) queued to run again (CLI and API).

The plan is `model.backfill` (the schedule's own fire times, the mode's choice, attempt =
latest + 1); the rows are `queued` with trigger 'backfill' in one statement, under the unique
occurrence key, so two backfills at once queue each occurrence once. The daemons' queue loop
(`engine/queue.py`) runs them, one at a time per schedule (BACKFILL_CONCURRENCY under
allow_all), after any live occurrence waiting and never beside a live run unless the schedule's
overlap policy allows it. A dry run writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import InvalidBackfill, ScheduleNotFound
from services.model.backfill import BackfillMode, Existing, occurrences_between, plan
from services.model.catalog import Catalog
from services.store.schedules import ScheduleRepository

_SQL = load_queries("executions")
REASON = "backfill: waiting for its turn"


@dataclass(frozen=True)
class BackfillResult:
    schedule_id: UUID
    mode: str
    dry_run: bool
    start: datetime
    end: datetime
    considered: int  # fire times in the range
    occurrences: list[dict[str, Any]] = field(default_factory=list)  # planned (and queued)
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_id": str(self.schedule_id),
            "mode": self.mode,
            "dry_run": self.dry_run,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "considered": self.considered,
            "queued": self.queued,
            "occurrences": self.occurrences,
        }


class Backfill:
    def __init__(
        self, db: DatabaseConnection, schedules: ScheduleRepository, instance_id: str
    ) -> None:
        self.db = db
        self.schedules = schedules
        self.instance_id = instance_id

    def run(
        self,
        schedule_id: UUID | str,
        start: datetime,
        end: datetime,
        mode: str = "missing",
        *,
        dry_run: bool = False,
    ) -> BackfillResult:
        """Queue (or, dry, list) the occurrences. ScheduleNotFound; InvalidBackfill (a bad
        range or mode, more than 10,000 occurrences); InvalidScheduleError."""
        try:
            chosen = BackfillMode(mode)
        except ValueError:
            accepted = ", ".join(m.value for m in BackfillMode)
            raise InvalidBackfill(f"mode must be one of {accepted}, got {mode!r}", "mode") from None
        schedule = self.schedules.get_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        spec = Catalog(self.schedules.default_timezone).parse(schedule).spec
        times = occurrences_between(spec, start, end)
        existing = self._existing(schedule.schedule_id, start, end)
        planned = plan(times, existing, chosen)
        rows = [
            {
                "execution_id": str(uuid4()),
                "scheduled_for": p.scheduled_for.isoformat(),
                "attempt": p.attempt,
            }
            for p in planned
        ]
        queued: list[dict[str, Any]] = []
        if rows and not dry_run:
            queued = self.db.fetch_all(
                _SQL["queue_backfill"],
                {
                    "rows": Jsonb(rows),
                    "schedule_id": schedule.schedule_id,
                    "job_id": f"backfill:{schedule.schedule_id}",
                    "domain": schedule.domain,
                    "domain_config_id": schedule.domain_config_id,
                    "instance_id": self.instance_id,
                    "reason": REASON,
                },
            )
        ids = {(r["scheduled_for"], r["attempt"]): r["execution_id"] for r in queued}
        listed = [
            {
                "scheduled_for": p.scheduled_for.isoformat(),
                "attempt": p.attempt,
                "execution_id": None
                if (p.scheduled_for, p.attempt) not in ids
                else str(ids[(p.scheduled_for, p.attempt)]),
            }
            for p in planned
        ]
        return BackfillResult(
            schedule.schedule_id, chosen.value, dry_run, start, end, len(times), listed, len(queued)
        )

    def _existing(
        self, schedule_id: UUID, start: datetime, end: datetime
    ) -> dict[datetime, Existing]:
        rows = self.db.fetch_all(
            _SQL["occurrence_attempts"], {"schedule_id": schedule_id, "start": start, "end": end}
        )
        return {
            row["scheduled_for"]: Existing(
                int(row["latest_attempt"]), row["latest_status"], bool(row["ran"])
            )
            for row in rows
        }
