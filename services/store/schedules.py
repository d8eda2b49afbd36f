"""CRUD over `schedules` (seed-001 API), validating every configuration it writes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection, get_db_connection
from database.queries import load_queries
from services.errors import InvalidScheduleError, ScheduleNotFound
from services.model.records import Schedule
from services.model.spec import validate_schedule
from services.model.vocabulary import JobType, ScheduleSource

_SQL = load_queries("schedules")
CONFIG_FIELDS = (
    "domain_config_id",
    "domain",
    "name",
    "profile_id",
    "frequency",
    "time_config",
    "enabled",
    "job_type",
    "payload",
    "source",
)
MAX_DOMAIN_LENGTH = 255


def _uuid(value: object, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidScheduleError(f"{field} must be a UUID, got {value!r}") from None


def validate_config(config: Mapping[str, Any], *, default_timezone: str = "UTC") -> dict[str, Any]:
    """Check and normalise one schedule's configuration; raise InvalidScheduleError with reasons."""
    errors: list[str] = []
    clean = dict(config)
    for key in ("domain_config_id", "profile_id"):
        if clean.get(key) is not None:
            try:
                clean[key] = _uuid(clean[key], key)
            except InvalidScheduleError as exc:
                errors.append(exc.reason)
    domain = clean.get("domain")
    if not isinstance(domain, str) or not domain.strip():
        errors.append(f"domain must be a non-empty string, got {domain!r}")
    elif len(domain) > MAX_DOMAIN_LENGTH or "\x00" in domain:
        errors.append(f"domain must be at most {MAX_DOMAIN_LENGTH} characters without NUL bytes")
    job_type = clean.get("job_type")
    if job_type is not None and (
        not isinstance(job_type, str) or job_type not in {t.value for t in JobType}
    ):
        allowed = ", ".join(t.value for t in JobType)
        errors.append(f"job_type {job_type!r} is not one of: {allowed} (or NULL for the default)")
    if not isinstance(clean.get("payload", {}), dict):
        errors.append(f"payload must be a JSON object, got {type(clean.get('payload')).__name__}")
    source = clean.get("source", ScheduleSource.MANUAL.value)
    if source not in {s.value for s in ScheduleSource}:
        errors.append(f"source {source!r} is not one of: manual, api")
    if not isinstance(clean.get("enabled", True), bool):
        errors.append(f"enabled must be true or false, got {clean.get('enabled')!r}")
    errors.extend(
        validate_schedule(
            clean.get("frequency"), clean.get("time_config"), default_timezone=default_timezone
        )
    )
    if errors:
        raise InvalidScheduleError("; ".join(errors))
    return clean


def _params(config: Mapping[str, Any]) -> dict[str, Any]:
    params = {key: config.get(key) for key in CONFIG_FIELDS}
    params["time_config"] = Jsonb(params["time_config"])
    params["payload"] = Jsonb(params["payload"] or {})
    return params


class ScheduleRepository:
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
    ) -> UUID:
        """Validate and insert one schedule; return its id."""
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
            },
            default_timezone=self.default_timezone,
        )
        schedule_id: UUID = self.db.fetch_value(_SQL["insert_schedule"], _params(config))
        return schedule_id

    def update_schedule(self, schedule_id: UUID | str, **changes: Any) -> Schedule:
        """Change some configuration columns; the merged result is validated as a whole."""
        unknown = set(changes) - set(CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"update_schedule() got unknown fields: {', '.join(sorted(unknown))}")
        key = {"schedule_id": _uuid(schedule_id, "schedule_id")}
        with self.db.transaction() as tx:
            row = tx.fetch_one(_SQL["get_schedule_for_update"], key)
            if row is None:
                raise ScheduleNotFound(schedule_id)
            merged = {field: row[field] for field in CONFIG_FIELDS}
            merged.update({k: v for k, v in changes.items()})
            config = validate_config(merged, default_timezone=self.default_timezone)
            updated = tx.fetch_one(_SQL["update_schedule_config"], {**_params(config), **key})
        assert updated is not None
        return Schedule.from_row(updated)

    def set_enabled(self, schedule_id: UUID | str, enabled: bool) -> Schedule:
        row = self.db.fetch_one(
            _SQL["set_enabled"],
            {"schedule_id": _uuid(schedule_id, "schedule_id"), "enabled": enabled},
        )
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return Schedule.from_row(row)

    def enable_schedule(self, schedule_id: UUID | str) -> Schedule:
        return self.set_enabled(schedule_id, True)

    def disable_schedule(self, schedule_id: UUID | str) -> Schedule:
        return self.set_enabled(schedule_id, False)

    def delete_schedule(self, schedule_id: UUID | str) -> bool:
        """Delete one schedule; True if it existed. Its history stays."""
        deleted = self.db.execute(
            _SQL["delete_schedule"], {"schedule_id": _uuid(schedule_id, "schedule_id")}
        )
        return deleted > 0

    def get_schedule(self, schedule_id: UUID | str) -> Schedule | None:
        row = self.db.fetch_one(
            _SQL["get_schedule"], {"schedule_id": _uuid(schedule_id, "schedule_id")}
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
        limit: int | None = None,
    ) -> list[Schedule]:
        rows = self.db.fetch_all(
            _SQL["list_schedules"],
            {
                "enabled": enabled,
                "domain": domain,
                "domain_config_id": None
                if domain_config_id is None
                else _uuid(domain_config_id, "domain_config_id"),
                "source": source,
                "limit": limit,
            },
        )
        return [Schedule.from_row(row) for row in rows]

    def get_schedules_by_domain(self, domain: str) -> list[Schedule]:
        return self.list_schedules(domain=domain)

    def get_schedules_by_config_id(self, domain_config_id: UUID | str) -> list[Schedule]:
        return self.list_schedules(domain_config_id=domain_config_id)

    def list_invalid(self) -> list[Schedule]:
        return [Schedule.from_row(row) for row in self.db.fetch_all(_SQL["list_invalid"])]


_repository: ScheduleRepository | None = None
_repository_lock = threading.Lock()


def get_schedule_repository() -> ScheduleRepository:
    """The process-wide repository over the process-wide pool."""
    global _repository
    with _repository_lock:
        if _repository is None:
            from services.config import get_settings

            _repository = ScheduleRepository(
                get_db_connection(), default_timezone=get_settings().scheduler_timezone
            )
        return _repository
