"""`run_requests`: what the CLI asks of the live daemons (trigger a schedule, cancel a run).

The CLI inserts a request and polls it; a daemon claims trigger requests (SKIP LOCKED: exactly one
instance gets each), acts on cancels aimed at its own runs, and records what became of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.model.shards import ShardSet

__all__ = ["RunRequest", "RunRequestStore"]

_SQL = load_queries("run_requests")


@dataclass(frozen=True, slots=True)
class RunRequest:
    request_id: UUID
    kind: str  # 'trigger' | 'cancel'
    schedule_id: UUID | None = None
    execution_id: UUID | None = None  # cancel: the run to stop; trigger: the run it started
    requested_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    done_at: datetime | None = None
    result: str | None = None
    reason: str | None = None  # a cancel's why, for the stopped run's row (migration 008)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRequest:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in row.items() if key in names})


class RunRequestStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def _one(self, query_name: str, params: dict[str, Any]) -> RunRequest | None:
        row = self.db.fetch_one(_SQL[query_name], params)
        return None if row is None else RunRequest.from_row(row)

    # -- the CLI's side -----------------------------------------------------------------------

    def request_trigger(self, schedule_id: UUID) -> RunRequest:
        """Ask any live instance to run `schedule_id` now (a NOTIFY wakes them)."""
        return self._insert("trigger", schedule_id=schedule_id)

    def request_cancel(self, execution_id: UUID, reason: str | None = None) -> RunRequest:
        """Ask the instance running `execution_id` to stop it (`reason`: why, for its row)."""
        return self._insert("cancel", execution_id=execution_id, reason=reason)

    def _insert(
        self,
        kind: str,
        *,
        schedule_id: UUID | None = None,
        execution_id: UUID | None = None,
        reason: str | None = None,
    ) -> RunRequest:
        params = {
            "kind": kind,
            "schedule_id": schedule_id,
            "execution_id": execution_id,
            "reason": reason,
        }
        request = self._one("insert_request", params)
        assert request is not None  # INSERT ... RETURNING always returns its row
        return request

    def get(self, request_id: UUID) -> RunRequest | None:
        return self._one("get_request", {"request_id": request_id})

    # -- the daemon's side --------------------------------------------------------------------

    def claim_trigger(
        self, instance_id: str, shards: ShardSet | None = None, *, route_grace: float = 10.0
    ) -> RunRequest | None:
        """The oldest unclaimed trigger request, now claimed by `instance_id`; None if none.
        With `shards` (sharded): only one of a schedule in them, unless it has waited
        `route_grace` seconds."""
        owned = sorted(shards.owned) if shards is not None and shards.sharded else None
        params = {
            "instance_id": instance_id,
            "owned": owned,
            "shards": shards.shards if shards is not None else 1,
            "route_grace": route_grace,
        }
        return self._one("claim_trigger", params)

    def open_claimants(self, instance_id: str) -> set[str]:
        """Instances other than `instance_id` holding unresolved trigger requests."""
        rows = self.db.fetch_all(_SQL["open_claimants"], {"instance_id": instance_id})
        return {str(row["claimed_by"]) for row in rows}

    def release_claims(self, instance_ids: Sequence[str]) -> int:
        """Unclaim the unresolved trigger requests of `instance_ids` (dead, or an earlier process
        of ours): any instance claims them again. Returns how many."""
        if not instance_ids:
            return 0
        rows = self.db.fetch_all(_SQL["release_claims"], {"instance_ids": list(instance_ids)})
        return len(rows)

    def open_cancels_for(self, execution_ids: Sequence[UUID]) -> list[RunRequest]:
        """Open cancel requests aimed at any of `execution_ids`."""
        rows = self.db.fetch_all(_SQL["open_cancels_for"], {"execution_ids": list(execution_ids)})
        return [RunRequest.from_row(row) for row in rows]

    def complete(
        self,
        request_id: UUID,
        result: str,
        *,
        instance_id: str,
        execution_id: UUID | None = None,
    ) -> None:
        """Record what became of a request (claimed by `instance_id` if nobody had claimed it)."""
        self.db.execute(
            _SQL["complete_request"],
            {
                "request_id": request_id,
                "result": result,
                "execution_id": execution_id,
                "instance_id": instance_id,
            },
        )

    def prune(self) -> int:
        """Forget requests older than a day; returns how many."""
        return self.db.execute(_SQL["prune_requests"])
