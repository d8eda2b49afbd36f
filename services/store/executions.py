"""The runner's writes to `job_executions`: claim, skip, finish, abandon; and its reads of it.

The final write (`finish_executions`) also sets the schedule's last_run/last_status/next_run, in
the same fenced statement. A finished run's result is never lost: when PostgreSQL is unreachable
at the final write, the result waits in the pending-writes queue (`store/pending.py`) and a
background thread writes it when PostgreSQL returns (so do `skipped` records).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.clock import SYSTEM_CLOCK, Clock
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.model.occurrence import Claim, FinalResult, OccurrenceKey
from services.store.group_commit import GroupCommit
from services.store.pending import PendingWrites

_SQL = load_queries("executions")
log = get_logger(__name__)


def _json(value: dict[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _finish_params(results: Sequence[FinalResult]) -> dict[str, Any]:
    # One JSON parameter for the whole batch: far cheaper to send than a column per array.
    return {
        "outcomes": Jsonb(
            [
                {
                    "execution_id": str(r.execution_id),
                    "fencing_token": r.fencing_token,
                    "status": r.status,
                    "duration_seconds": r.duration_seconds,
                    "scan_id": None if r.scan_id is None else str(r.scan_id),
                    "error_message": r.error_message,
                    "error_details": r.error_details,
                    "metadata": r.metadata,
                    "next_run": None if r.next_run is None else r.next_run.isoformat(),
                }
                for r in results
            ]
        )
    }


class ExecutionStore:
    def __init__(
        self, db: DatabaseConnection, instance_id: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.db = db
        self.instance_id = instance_id
        self._pending = PendingWrites(db, _SQL, clock=clock)
        self._claims: GroupCommit[tuple[OccurrenceKey, UUID], Claim | None] = GroupCommit(
            self._claim_batch
        )
        self._finishes: GroupCommit[FinalResult, tuple[bool, bool]] = GroupCommit(
            self._finish_batch
        )

    # -- claims and records ----------------------------------------------------------------

    @property
    def database_down(self) -> bool:
        """True since a statement found PostgreSQL unreachable, until one succeeds again."""
        return self._pending.database_down

    def _mark_down(self) -> None:
        self._pending.mark_down()

    def probe(self) -> bool:
        """Check whether PostgreSQL answers again; True when it does."""
        return self._pending.probe()

    def claim_many(
        self, requests: Sequence[tuple[OccurrenceKey, UUID]]
    ) -> list[Claim | BaseException | None]:
        """Claim many occurrences in one statement: per request its Claim, None (another run
        has it) or the DatabaseError that refused it alone. DatabaseUnavailable for all at once.
        A lone request shares a statement with other threads' lone requests (group commit)."""
        if self.database_down:
            raise DatabaseUnavailable("PostgreSQL is unreachable (waiting for it to return)")
        try:
            if len(requests) == 1:
                try:
                    return [self._claims.submit(requests[0])]
                except DatabaseError as exc:
                    return [exc]
            return self._claim_batch(requests)
        except DatabaseUnavailable:
            self._mark_down()
            raise

    def _claim_batch(
        self, requests: Sequence[tuple[OccurrenceKey, UUID]]
    ) -> list[Claim | BaseException | None]:
        unique: dict[tuple[UUID, datetime, int], tuple[OccurrenceKey, UUID]] = {}
        for key, execution_id in requests:
            # Two claims of one occurrence in one statement would be an error: the second loses.
            occurrence = (key.schedule_id, key.scheduled_for, key.attempt)
            unique.setdefault(occurrence, (key, execution_id))
        try:
            rows = self.db.fetch_all(
                _SQL["claim_occurrences"], self._claim_params(list(unique.values())), fast=True
            )
        except DatabaseError:
            if len(requests) == 1:
                raise
            # One claim the database refuses (its schedule was deleted a moment ago, say) must
            # not fail the others: each is tried alone.
            return [self._claim_alone(request) for request in requests]
        claims = {
            row["execution_id"]: Claim(row["execution_id"], row["fencing_token"], row["started_at"])
            for row in rows
        }
        return [claims.get(execution_id) for _key, execution_id in requests]

    def _claim_alone(self, request: tuple[OccurrenceKey, UUID]) -> Claim | BaseException | None:
        try:
            (answer,) = self._claim_batch([request])
        except (DatabaseError, DatabaseUnavailable) as exc:
            return exc
        return answer

    def _claim_params(self, requests: Sequence[tuple[OccurrenceKey, UUID]]) -> dict[str, Any]:
        claims = [
            {
                "execution_id": str(execution_id),
                "schedule_id": str(key.schedule_id),
                "job_id": key.job_id,
                "domain": key.domain,
                "domain_config_id": str(key.domain_config_id),
                "scheduled_for": key.scheduled_for.isoformat(),
                "attempt": key.attempt,
                "trigger": key.trigger,
            }
            for key, execution_id in requests
        ]
        return {"claims": Jsonb(claims), "instance_id": self.instance_id}

    def record_skipped(
        self,
        key: OccurrenceKey,
        reason: str,
        details: dict[str, Any] | None = None,
        *,
        execution_id: UUID | None = None,
    ) -> bool:
        """Record an occurrence that was due but not run (deferred if PostgreSQL is down).
        False when the occurrence already has a row (then it was not skipped after all).
        `execution_id`: that of our own claim whose answer was lost (it may have been
        committed): a `running` row under it is ours, never run, and becomes this skip."""
        from uuid import uuid4

        params = {
            **self._key_params(key),
            "execution_id": execution_id or uuid4(),
            "error_message": reason,
            "error_details": _json(details),
        }
        written, row = self._pending.write("record_skipped", params)
        return row is not None or not written

    def finish(self, result: FinalResult) -> tuple[bool, bool]:
        """Write a run's outcome; (row written, schedule's last_* written). Deferred when
        PostgreSQL is unreachable: then (True, True) is assumed and the write happens later.
        Outcomes finished at the same moment go to PostgreSQL together, as one statement."""
        if not self.database_down:
            try:
                return self._finishes.submit(result)
            except DatabaseUnavailable:
                self._mark_down()
            except DatabaseError as exc:
                return self._written(result, exc)
        self._pending.defer("finish_executions", _finish_params([result]))
        return True, True

    def finish_many(self, results: Sequence[FinalResult]) -> list[tuple[bool, bool]]:
        """finish() for many outcomes in one statement. A result the database refuses outright
        is logged and reported as not written (it never would be). A lone result shares a
        statement with other threads' lone results (group commit)."""
        if len(results) == 1:
            return [self.finish(results[0])]
        if not self.database_down:
            try:
                answers = self._finish_batch(results)
            except DatabaseUnavailable:
                self._mark_down()
            else:
                pairs = zip(results, answers, strict=True)
                return [self._written(result, answer) for result, answer in pairs]
        for result in results:
            self._pending.defer("finish_executions", _finish_params([result]))
        return [(True, True)] * len(results)

    def _written(
        self, result: FinalResult, answer: tuple[bool, bool] | BaseException
    ) -> tuple[bool, bool]:
        if isinstance(answer, DatabaseUnavailable):
            # Lost while a refused batch was retried one by one: this one waits too.
            self._mark_down()
            self._pending.defer("finish_executions", _finish_params([result]))
            return True, True
        if not isinstance(answer, BaseException):
            return answer
        log.error("store.result_refused", execution_id=str(result.execution_id), error=str(answer))
        return False, False

    def _finish_batch(
        self, results: Sequence[FinalResult]
    ) -> list[tuple[bool, bool] | BaseException]:
        try:
            rows = self.db.fetch_all(_SQL["finish_executions"], _finish_params(results), fast=True)
        except DatabaseError:
            if len(results) == 1:
                raise
            return [self._finish_alone(result) for result in results]
        written = {
            row["execution_id"]: (bool(row["execution_written"]), bool(row["schedule_written"]))
            for row in rows
        }
        return [written.get(result.execution_id, (False, False)) for result in results]

    def _finish_alone(self, result: FinalResult) -> tuple[bool, bool] | BaseException:
        try:
            (answer,) = self._finish_batch([result])
        except (DatabaseError, DatabaseUnavailable) as exc:
            return exc
        return answer

    def occurrence_row(self, key: OccurrenceKey) -> tuple[UUID, str] | None:
        """(execution_id, status) of the occurrence's row; None if it has none."""
        row = self.db.fetch_one(_SQL["occurrence_row"], self._key_params(key))
        return None if row is None else (row["execution_id"], str(row["status"]))

    def occurrence_exists(self, key: OccurrenceKey) -> bool:
        row = self.db.fetch_one(_SQL["occurrence_exists"], self._key_params(key))
        return bool(row and row["found"])

    def abandon(self, execution_id: UUID, reason: str) -> bool:
        written, row = self._pending.write(
            "abandon_execution", {"execution_id": execution_id, "reason": reason}
        )
        return row is not None or not written

    def abandon_own_leftovers(self, reason: str) -> list[dict[str, Any]]:
        """Rows an earlier process left `running` under this INSTANCE_ID become `abandoned`."""
        return self.db.fetch_all(
            _SQL["abandon_instance_rows"], {"instance_id": self.instance_id, "reason": reason}
        )

    def running_rows_of_others(self) -> list[dict[str, Any]]:
        return self.db.fetch_all(_SQL["running_rows_of_others"], {"instance_id": self.instance_id})

    def orphaned_retries(self) -> list[dict[str, Any]]:
        """Failed attempts owed a retry that has no row yet (see the query)."""
        return self.db.fetch_all(_SQL["orphaned_retries"])

    def profile_settings(self, profile_id: UUID) -> dict[str, Any]:
        row = self.db.fetch_one(_SQL["get_profile_settings"], {"profile_id": profile_id})
        settings = row["settings"] if row else None
        return settings if isinstance(settings, dict) else {}

    # -- writes that wait for PostgreSQL ------------------------------------------------------

    @property
    def on_pending_change(self) -> Callable[[int], None]:
        """Called with the number of writes waiting whenever it changes (a metric's setter)."""
        return self._pending.on_change

    @on_pending_change.setter
    def on_pending_change(self, callback: Callable[[int], None]) -> None:
        self._pending.on_change = callback

    @property
    def pending_count(self) -> int:
        return self._pending.count

    def flush_pending(self) -> int:
        """Write deferred results in order; stop at the first that still cannot be written."""
        return self._pending.flush()

    def _key_params(self, key: OccurrenceKey) -> dict[str, Any]:
        return {
            "schedule_id": key.schedule_id,
            "scheduled_for": key.scheduled_for,
            "attempt": key.attempt,
            "trigger": key.trigger,
            "job_id": key.job_id,
            "domain": key.domain,
            "domain_config_id": key.domain_config_id,
            "instance_id": self.instance_id,
        }
