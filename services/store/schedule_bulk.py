"""Writes of many schedules in one transaction: the REST API's bulk create and bulk operation.

All or nothing: a bulk create validates every item first and inserts none if one is wrong; a
bulk operation locks the rows it matched and changes them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from database.connection import DatabaseConnection, Session, retry_transient
from database.queries import load_queries
from services.errors import BulkInvalid, CreatorLimitReached, InvalidScheduleError, SchedulerError
from services.model.schedule_config import validate_config
from services.model.vocabulary import ScheduleSource
from services.store.audit import acting_as
from services.store.schedule_params import config_params, writing_config
from services.store.scheduler_state import pause_author, pause_note

__all__ = ["BULK_OPERATIONS", "BulkResult", "create_many", "run_bulk_operation"]

_SQL = load_queries("schedules")
_REQUESTS = load_queries("run_requests")
BULK_OPERATIONS = ("pause", "resume", "delete", "trigger")
_DEFAULTS: dict[str, Any] = {
    "name": None,
    "profile_id": None,
    "enabled": True,
    "job_type": None,
    "payload": {},
    "source": ScheduleSource.MANUAL.value,
    "tags": [],
    "notify": {},
}


@dataclass(frozen=True, slots=True)
class BulkResult:
    matched: int
    changed: int
    request_ids: list[UUID] = field(default_factory=list)  # trigger: one request per schedule


def create_many(
    db: DatabaseConnection,
    items: Sequence[Mapping[str, Any]],
    *,
    default_timezone: str,
    actor: str | None,
    created_by: str | None,
    max_per_creator: int = 0,
) -> list[UUID]:
    """Validate every item, then insert them all in one transaction; their ids, in order.

    Raises BulkInvalid (every wrong item by index; nothing inserted) or CreatorLimitReached.
    An item naming a scan profile that does not exist is found by its insert: the transaction
    ends there, so BulkInvalid names that item alone.
    """
    configs: list[dict[str, Any]] = []
    problems: list[tuple[int, InvalidScheduleError]] = []
    for index, item in enumerate(items):
        config = {**_DEFAULTS, "domain_config_id": uuid4(), **item}
        try:
            configs.append(validate_config(config, default_timezone=default_timezone))
        except InvalidScheduleError as exc:
            problems.append((index, exc))
    if problems:
        raise BulkInvalid(problems)
    with acting_as(db, actor) as tx:
        if created_by is not None and max_per_creator > 0:
            _check_creator_limit(tx, created_by, max_per_creator, len(configs))
        return [_insert(tx, index, config, created_by) for index, config in enumerate(configs)]


def _insert(tx: Session, index: int, config: Mapping[str, Any], created_by: str | None) -> UUID:
    try:
        with writing_config(config):
            schedule_id: UUID = tx.fetch_value(
                _SQL["insert_schedule"], {**config_params(config), "created_by": created_by}
            )
    except InvalidScheduleError as exc:
        raise BulkInvalid([(index, exc)]) from None
    return schedule_id


def _check_creator_limit(tx: Session, creator: str, limit: int, adding: int) -> None:
    tx.execute(_SQL["lock_creator"], {"creator": creator})
    existing = int(tx.fetch_value(_SQL["count_by_creator"], {"creator": creator}))
    if existing + adding > limit:
        raise CreatorLimitReached(creator, limit, existing, adding)


def run_bulk_operation(
    db: DatabaseConnection,
    operation: str,
    *,
    schedule_ids: Sequence[UUID] | None,
    tag: str | None,
    note: str | None,
    by: str | None,
    actor: str | None,
) -> BulkResult:
    """Pause, resume, delete or trigger every schedule matched by ids and/or tag, in one
    transaction. `changed` counts the rows whose state changed (pausing a paused one does not)."""
    if operation not in BULK_OPERATIONS:
        raise SchedulerError(
            f"operation must be one of: {', '.join(BULK_OPERATIONS)}, got {operation!r}"
        )
    if schedule_ids is None and tag is None:
        raise SchedulerError("give schedule_ids or tag (or both) to say which schedules")
    pause = _pause_fields(operation, note, by)  # refused before anything is read or locked

    # It locks schedules and then (a delete's ON DELETE SET NULL) their runs; a run's final
    # write locks them the other way round. PostgreSQL breaks such a deadlock by aborting one
    # side, which changed nothing: this side then runs again.
    return retry_transient(
        lambda: _bulk_transaction(db, operation, schedule_ids, tag, pause, actor)
    )


def _bulk_transaction(
    db: DatabaseConnection,
    operation: str,
    schedule_ids: Sequence[UUID] | None,
    tag: str | None,
    pause: dict[str, str | None],
    actor: str | None,
) -> BulkResult:
    with acting_as(db, actor) as tx:
        matched = tx.fetch_all(
            _SQL["match_for_bulk"],
            {"ids": None if schedule_ids is None else list(schedule_ids), "tag": tag},
        )
        ids = [row["schedule_id"] for row in matched]
        if not ids:
            return BulkResult(0, 0)
        if operation == "trigger":
            requests = tx.fetch_all(_REQUESTS["insert_triggers"], {"schedule_ids": ids})
            return BulkResult(len(ids), len(requests), [r["request_id"] for r in requests])
        params = {"ids": ids, **pause}
        changed = tx.fetch_all(_SQL[f"{operation}_many"], params)
        return BulkResult(len(ids), len(changed))


def _pause_fields(operation: str, note: str | None, by: str | None) -> dict[str, str | None]:
    """A bulk pause checks its note and author exactly as a single pause does (a blank note is
    no note; a blank or missing author is refused); the other operations do not use them."""
    if operation != "pause":
        return {"note": None, "paused_by": None}
    return {"note": pause_note(note, required=False), "paused_by": pause_author(by or "")}
