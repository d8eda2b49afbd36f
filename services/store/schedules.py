"""The `schedules` table's store: every statement on it but the runner's final write.

- configuration CRUD (seed-001 API: create/update/delete/get...), validating what it writes;
- pausing and resuming one schedule (`enabled` with the paused_* note, author and time);
- the daemon's bookkeeping: `next_run` and the invalid/expired marks (never config changes);
- the watcher's reads: changes since a transaction-id watermark, the start-up load, hashes;
- the API sync's statements on `source='api'` rows, through `api_rows()` (`schedule_sync.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection, get_db_connection, load_json
from database.queries import load_queries
from services.errors import ScheduleNotFound, StaleSchedule
from services.model.records import NextRunWrite, Schedule, schedules_from_json_text
from services.model.schedule_config import CONFIG_FIELDS, as_uuid, validate_config
from services.model.vocabulary import ScheduleSource
from services.process_wide import ProcessWide
from services.store.audit import acting_as
from services.store.schedule_bulk import BulkResult, create_many, run_bulk_operation
from services.store.schedule_pages import ScheduleFilter, page_schedules
from services.store.schedule_params import config_params, writing_config
from services.store.schedule_sync import ApiRows, open_api_rows
from services.store.scheduler_state import pause_author, pause_note

__all__ = [
    "CONFIG_FIELDS",
    "ChangedSince",
    "ScheduleRepository",
    "get_schedule_repository",
    "validate_config",
]

_SQL = load_queries("schedules")
LOAD_BATCH = 5000
# Shard key ranges, lows and highs (ShardSet.bounds): the part of the table one instance owns.
KeyRanges = tuple[list[int], list[int]]


@dataclass(frozen=True, slots=True)
class ChangedSince:
    """Configuration changes committed since a watermark."""

    watermark: str  # the next one: the oldest transaction open at the statement's snapshot
    hashes: dict[UUID, str]  # schedule_id -> config_hash of each row changed meanwhile


class ScheduleRepository:
    """Every statement on `schedules` (and its tombstones) but the runner's final write, which
    sets last_* together with its `job_executions` row (`store/executions.py`)."""

    def __init__(self, db: DatabaseConnection, *, default_timezone: str = "UTC") -> None:
        self.db = db
        self.default_timezone = default_timezone

    def create_schedule(
        self,
        domain_config_id: UUID | str,
        domain: str,
        frequency: str,
        time_config: Mapping[str, Any],
        enabled: bool = True,
        *,
        job_type: str | None = None,
        payload: Mapping[str, Any] | None = None,
        profile_id: UUID | str | None = None,
        name: str | None = None,
        source: str = ScheduleSource.MANUAL.value,
        tags: Sequence[str] | None = None,
        notify: Mapping[str, Any] | None = None,
        actor: str | None = None,
        created_by: str | None = None,
    ) -> UUID:
        """Validate and insert one schedule; return its id.

        actor: who the audit trail names (None: `sql:<session_user>`); created_by defaults to it.
        """
        config = validate_config(
            {
                "domain_config_id": domain_config_id,
                "domain": domain,
                "name": name,
                "profile_id": profile_id,
                "frequency": frequency,
                "time_config": time_config,
                "enabled": enabled,
                "job_type": job_type,
                "payload": dict(payload or {}),
                "source": source,
                "tags": [] if tags is None else tags,
                "notify": {} if notify is None else notify,
            },
            default_timezone=self.default_timezone,
        )
        params = {
            **config_params(config),
            "created_by": actor if created_by is None else created_by,
        }
        with acting_as(self.db, actor) as tx, writing_config(config):
            schedule_id: UUID = tx.fetch_value(_SQL["insert_schedule"], params)
        return schedule_id

    def update_schedule(
        self,
        schedule_id: UUID | str,
        *,
        actor: str | None = None,
        expected_hash: str | None = None,
        **changes: Any,
    ) -> Schedule:
        """Change some configuration columns; the merged result is validated as a whole.
        actor: who the audit trail names (None: `sql:<session_user>`); expected_hash: the
        config_hash the caller last saw (If-Match), StaleSchedule when the row has another."""
        unknown = set(changes) - set(CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"update_schedule() got unknown fields: {', '.join(sorted(unknown))}")
        key = {"schedule_id": as_uuid(schedule_id, "schedule_id")}
        with acting_as(self.db, actor) as tx:
            row = tx.fetch_one(_SQL["get_schedule_for_update"], key)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            _check_expected(row, expected_hash)
            merged = {field: row[field] for field in CONFIG_FIELDS}
            merged.update({k: v for k, v in changes.items()})
            config = validate_config(merged, default_timezone=self.default_timezone)
            with writing_config(config):
                updated = tx.fetch_one(
                    _SQL["update_schedule_config"], {**config_params(config), **key}
                )
        assert updated is not None
        return Schedule.from_row(updated)

    def set_enabled(
        self, schedule_id: UUID | str, enabled: bool, *, actor: str | None = None
    ) -> Schedule:
        params = {"schedule_id": as_uuid(schedule_id, "schedule_id"), "enabled": enabled}
        with acting_as(self.db, actor) as tx:
            row = tx.fetch_one(_SQL["set_enabled"], params)
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(row)

    def enable_schedule(self, schedule_id: UUID | str, *, actor: str | None = None) -> Schedule:
        return self.set_enabled(schedule_id, True, actor=actor)

    def disable_schedule(self, schedule_id: UUID | str, *, actor: str | None = None) -> Schedule:
        return self.set_enabled(schedule_id, False, actor=actor)

    def pause_schedule(
        self, schedule_id: UUID | str, *, note: str | None, by: str, actor: str | None = None
    ) -> Schedule:
        """Disable a schedule with why (`note`, optional), who (`by`) and when, in one statement;
        the audit trail names `actor`. Pausing a paused schedule replaces its note."""
        params = {
            "schedule_id": as_uuid(schedule_id, "schedule_id"),
            "note": pause_note(note, required=False),
            "by": pause_author(by),
        }
        with acting_as(self.db, actor) as tx:
            row = tx.fetch_one(_SQL["pause_schedule"], params)
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(row)

    def resume_schedule(self, schedule_id: UUID | str, *, actor: str | None = None) -> Schedule:
        """Enable a schedule again and clear its paused_note, paused_by and paused_at."""
        with acting_as(self.db, actor) as tx:
            row = tx.fetch_one(
                _SQL["resume_schedule"], {"schedule_id": as_uuid(schedule_id, "schedule_id")}
            )
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(row)

    def delete_schedule(
        self, schedule_id: UUID | str, *, actor: str | None = None, expected_hash: str | None = None
    ) -> bool:
        """Delete one schedule; True if it existed. Its history stays (and its audit trail).
        expected_hash: as for update_schedule (StaleSchedule when the row has changed)."""
        key = {"schedule_id": as_uuid(schedule_id, "schedule_id")}
        with acting_as(self.db, actor) as tx:
            if expected_hash is not None:
                row = tx.fetch_one(_SQL["get_schedule_for_update"], key)
                if row is None:
                    return False
                _check_expected(row, expected_hash)
            deleted = tx.execute(_SQL["delete_schedule"], key)
        return deleted > 0

    def get_schedule(self, schedule_id: UUID | str) -> Schedule | None:
        row = self.db.fetch_one(
            _SQL["get_schedule"], {"schedule_id": as_uuid(schedule_id, "schedule_id")}
        )
        return None if row is None else Schedule.from_row(row)

    def require_schedule(self, schedule_id: UUID | str) -> Schedule:
        schedule = self.get_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        return schedule

    def list_schedules(
        self,
        *,
        enabled: bool | None = None,
        domain: str | None = None,
        domain_config_id: UUID | str | None = None,
        source: str | None = None,
        tags: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Schedule]:
        """Schedules matching every filter given (tags: each one listed must be present)."""
        rows = self.db.fetch_all(
            _SQL["list_schedules"],
            {
                "enabled": enabled,
                "domain": domain,
                "domain_config_id": None
                if domain_config_id is None
                else as_uuid(domain_config_id, "domain_config_id"),
                "source": source,
                "tags": None if not tags else list(tags),
                "limit": limit,
            },
        )
        return [Schedule.from_row(row) for row in rows]

    def get_schedules_by_domain(self, domain: str) -> list[Schedule]:
        return self.list_schedules(domain=domain)

    def get_schedules_by_config_id(self, domain_config_id: UUID | str) -> list[Schedule]:
        return self.list_schedules(domain_config_id=domain_config_id)

    def next_due(self, limit: int) -> list[Schedule]:
        rows = self.db.fetch_all(_SQL["next_due"], {"limit": limit})
        return [Schedule.from_row(row) for row in rows]

    def failing(self, limit: int = 20) -> list[Schedule]:
        """Schedules whose last outcome failed (or that are invalid), most recent first."""
        rows = self.db.fetch_all(_SQL["failing_schedules"], {"limit": limit})
        return [Schedule.from_row(row) for row in rows]

    def list_invalid(self) -> list[Schedule]:
        return [Schedule.from_row(row) for row in self.db.fetch_all(_SQL["list_invalid"])]

    # -- the daemon's bookkeeping (next_run, last_status/last_error: never a config change) ----

    def set_next_runs(self, writes: Sequence[NextRunWrite]) -> int:
        """Write next_run of many schedules in one statement; the number of rows changed. A row
        whose configuration changed since (its config_hash differs) is left alone."""
        if not writes:
            return 0
        params = {
            "schedule_ids": [w.schedule_id for w in writes],
            "next_runs": [w.next_run for w in writes],
            "config_hashes": [w.config_hash for w in writes],
        }
        return self.db.execute(_SQL["set_next_runs"], params)

    def mark_schedule_status(self, schedule_id: UUID, status: str, error: str | None) -> bool:
        """Set last_status/last_error once (no write when already so); clears next_run."""
        params = {"schedule_id": schedule_id, "status": status, "error": error}
        return self.db.execute(_SQL["mark_schedule_status"], params) > 0

    def clear_schedule_mark(self, schedule_id: UUID) -> None:
        """A row that parses again loses its 'invalid'/'expired' mark."""
        self.db.execute(_SQL["clear_schedule_mark"], {"schedule_id": schedule_id})

    # -- the watcher's reads ------------------------------------------------------------------

    def current_xmin(self) -> str:
        """The watermark to start from: the oldest transaction open right now."""
        return str(self.db.fetch_value(_SQL["current_xmin"]))

    def changed_since(self, watermark: str) -> ChangedSince:
        """Rows whose configuration changed in a transaction at or after `watermark`."""
        rows = self.db.fetch_all(_SQL["changed_since"], {"since": watermark})
        hashes = {r["schedule_id"]: r["config_hash"] for r in rows if r["schedule_id"] is not None}
        return ChangedSince(rows[0]["xmin"], hashes)

    def deleted_since(self, watermark: str) -> set[UUID]:
        """Schedules deleted in a transaction at or after `watermark` (their tombstones)."""
        rows = self.db.fetch_all(_SQL["deleted_since"], {"since": watermark})
        return {r["schedule_id"] for r in rows}

    def all_schedules(self, ranges: KeyRanges | None = None) -> list[Schedule]:
        """Every row (or the rows of these shard key `ranges`), for a load: one statement (one
        snapshot), its rows turned into records LOAD_BATCH at a time so that the rows never all
        exist as dicts (the peak RSS of the load); each distinct JSON text decoded once;
        time_config kept as text only."""
        query, params = _SQL["all_schedules"], None
        if ranges is not None:
            query, params = _SQL["shard_schedules"], {"lo": ranges[0], "hi": ranges[1]}
        with self.db.session() as session:
            batches = session.fetch_batches(query, params, size=LOAD_BATCH)
            rows = (row for batch in batches for row in batch)
            return schedules_from_json_text(rows, load_json, decode_time_config=False)

    def all_hashes(self, ranges: KeyRanges | None = None) -> dict[UUID, str]:
        """Every row's configuration hash (or those of these shard key `ranges`), for the
        safety pass."""
        if ranges is None:
            rows = self.db.fetch_all(_SQL["all_hashes"])
        else:
            rows = self.db.fetch_all(_SQL["shard_hashes"], {"lo": ranges[0], "hi": ranges[1]})
        return {r["schedule_id"]: r["config_hash"] for r in rows}

    def schedules_by_ids(self, schedule_ids: Sequence[UUID]) -> list[Schedule]:
        """The current rows of `schedule_ids` (an id with no row is simply absent)."""
        rows = self.db.fetch_all(_SQL["schedules_by_ids"], {"ids": list(schedule_ids)})
        return [Schedule.from_row(r) for r in rows]

    def prune_tombstones(self) -> int:
        """Forget deletions every instance has long since applied."""
        return self.db.execute(_SQL["prune_tombstones"])

    # -- the API sync -------------------------------------------------------------------------

    @contextmanager
    def api_rows(self, *, write: bool, actor: str | None = None) -> Iterator[ApiRows]:
        """The API sync's statements on `source='api'` rows (see `open_api_rows`); `actor`
        names the writer in the audit trail."""
        with open_api_rows(self.db, write=write, actor=actor) as rows:
            yield rows

    # -- the REST API -------------------------------------------------------------------------

    def page(
        self,
        where: ScheduleFilter,
        *,
        sort: str = "created_at",
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Schedule], str | None]:
        """A keyset page and the next page's cursor (`schedule_pages.py`)."""
        return page_schedules(self.db, where, sort=sort, limit=limit, cursor=cursor)

    def create_many(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        actor: str | None,
        created_by: str | None,
        max_per_creator: int = 0,
    ) -> list[UUID]:
        """All or nothing: BulkInvalid names every wrong item (`schedule_bulk.py`)."""
        return create_many(
            self.db,
            items,
            default_timezone=self.default_timezone,
            actor=actor,
            created_by=created_by,
            max_per_creator=max_per_creator,
        )

    def bulk_operation(
        self,
        operation: str,
        *,
        schedule_ids: Sequence[UUID] | None = None,
        tag: str | None = None,
        note: str | None = None,
        by: str | None = None,
        actor: str | None = None,
    ) -> BulkResult:
        """Pause/resume/delete/trigger the matched schedules in one transaction."""
        return run_bulk_operation(
            self.db, operation, schedule_ids=schedule_ids, tag=tag, note=note, by=by, actor=actor
        )


def _check_expected(row: Mapping[str, Any], expected_hash: str | None) -> None:
    if expected_hash is not None and row["config_hash"] != expected_hash:
        raise StaleSchedule(row["schedule_id"], row["config_hash"])


def _default_repository() -> ScheduleRepository:
    from services.config import get_settings

    return ScheduleRepository(
        get_db_connection(), default_timezone=get_settings().scheduler_timezone
    )


_repository: ProcessWide[ScheduleRepository] = ProcessWide(_default_repository)


def get_schedule_repository() -> ScheduleRepository:
    """The process-wide repository over the process-wide pool."""
    return _repository.get()
