"""Rows as frozen dataclasses: what the repositories hand to the rest of the daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cache
from sys import intern
from typing import Any, NamedTuple
from uuid import UUID


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _from_row(cls: Any, row: dict[str, Any]) -> Any:
    names = _field_names(cls)
    return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule_id: UUID
    domain_config_id: UUID
    domain: str
    frequency: str
    # JSON as stored: validated separately, may be anything in a hand-made row; None in the
    # start-up load's records, which keep only its text (time_config_json, below).
    time_config: Any
    enabled: bool = True
    name: str | None = None
    profile_id: UUID | None = None
    job_type: str | None = None
    payload: Any = field(default_factory=dict)
    source: str = "manual"
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    config_hash: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tags: tuple[str, ...] = ()
    notify: Any = field(default_factory=dict)
    created_by: str | None = None
    paused_note: str | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None
    # time_config as stored (jsonb text), when the row was read that way: the parse cache's key.
    time_config_json: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tags, tuple):  # TEXT[] arrives as a list
            object.__setattr__(self, "tags", tuple(self.tags or ()))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        schedule: Schedule = _from_row(cls, row)
        return schedule

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "time_config_json"}

    def release_config_text(self) -> None:
        """Drop the time_config text once the row is parsed. The text is only the parse cache's
        key (~150 B a row at 100,000 varied rows) and is excluded from equality and to_dict, so
        no reader can tell; the record stays frozen in every field that means something. A copy
        would leave the start-up load's 100,000 originals behind as freed holes in the heap."""
        object.__setattr__(self, "time_config_json", None)


_VOCABULARY_COLUMNS = ("frequency", "job_type", "source", "last_status")
# Rows inserted or run together share these instants (a bulk insert's updated_at, every "daily
# at 02:00" row's next_run): one object each instead of 48 B per row and column.
_INSTANT_COLUMNS = ("next_run", "last_run", "created_at", "updated_at")


def schedules_from_json_text(
    rows: Iterable[dict[str, Any]],
    load_json: Callable[[str], Any],
    *,
    decode_time_config: bool = True,
) -> list[Schedule]:
    """Schedules from rows whose time_config and payload arrive as jsonb text: each distinct
    text is decoded once and its value shared between the rows that hold it (records are
    frozen, and nothing changes a decoded value). At 100,000 rows, decoding each row's JSON
    separately was a large part of the start-up.

    decode_time_config=False (the start-up load) leaves `time_config` None and keeps only its
    text: the parser reads the text, nothing after it reads the dict, and at 100,000 varied
    rows the dicts held ~500 B per schedule. The vocabulary columns are interned, so 100,000
    rows share a few strings instead of holding one copy each, and equal instants one object."""
    decoded: dict[str, Any] = {}
    strings: dict[str, str] = {}
    instants: dict[tuple[datetime, Any], datetime] = {}  # keyed with the zone: equal is not same

    def value_of(text: str | None) -> Any:
        if text is None:
            return None
        try:
            return decoded[text]
        except KeyError:
            value = decoded[text] = _share_strings(load_json(text), strings)
            return value

    schedules = []
    for row in rows:
        config_text = row.pop("time_config_json")
        row["time_config"] = value_of(config_text) if decode_time_config else None
        row["payload"] = value_of(row.pop("payload_json"))
        for column in _VOCABULARY_COLUMNS:
            if isinstance(value := row.get(column), str):
                row[column] = intern(value)
        for column in _INSTANT_COLUMNS:
            if isinstance(value := row.get(column), datetime):
                row[column] = instants.setdefault((value, value.tzinfo), value)
        if "notify_json" in row:
            row["notify"] = value_of(row.pop("notify_json"))
        schedules.append(Schedule(**row, time_config_json=config_text))
    return schedules


_SHORT = 64  # longer strings (URLs with a row's own path, messages) are rarely shared


def _share_strings(value: Any, strings: dict[str, str]) -> Any:
    """A decoded JSON object with its keys, and its short string values, shared with the equal
    ones of the rows before. Every row of a varied install has its own payload text (its own
    target), but the keys ("callable", "url") and most values repeat: json decodes a fresh copy
    of each per document, ~200 B per schedule at 100,000 rows. Top level only."""
    if not isinstance(value, dict):
        return value
    return {
        strings.setdefault(key, key): (
            strings.setdefault(item, item)
            if isinstance(item, str) and len(item) <= _SHORT
            else item
        )
        for key, item in value.items()
    }


@dataclass(frozen=True, slots=True)
class Execution:
    execution_id: UUID
    schedule_id: UUID | None
    job_id: str
    domain: str
    domain_config_id: UUID
    status: str
    started_at: datetime
    scheduled_for: datetime
    attempt: int = 1
    trigger: str = "schedule"
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    scan_id: UUID | None = None
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    instance_id: str | None = None
    fencing_token: int | None = None
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Execution:
        execution: Execution = _from_row(cls, row)
        return execution

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as stored, without its hash (which never leaves the store)."""

    name: str
    role: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiToken:
        token: ApiToken = _from_row(cls, row)
        return token

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One configuration change of a schedule (`schedule_audit`)."""

    audit_id: int
    schedule_id: UUID
    action: str
    actor: str
    changed_at: datetime
    changed_fields: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.changed_fields, tuple):
            object.__setattr__(self, "changed_fields", tuple(self.changed_fields or ()))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuditEntry:
        entry: AuditEntry = _from_row(cls, row)
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class SchedulerPause:
    """The global pause (`scheduler_state`): while `paused`, no instance starts a run."""

    paused: bool = False
    note: str | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SchedulerPause:
        return cls(
            paused=bool(row["paused"]),
            note=row["paused_note"],
            paused_by=row["paused_by"],
            paused_at=row["paused_at"],
        )

    @property
    def skip_reason(self) -> str:
        """What each occurrence due during the pause is recorded `skipped` with."""
        return f"scheduler paused: {self.note}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


NOT_PAUSED = SchedulerPause()


class NextRunWrite(NamedTuple):
    """next_run computed for a schedule at the configuration `config_hash` names."""

    schedule_id: UUID
    next_run: datetime | None
    config_hash: str | None


@dataclass(frozen=True, slots=True)
class Channel:
    """A notification channel as stored. `target` may hold a secret (a webhook URL with its
    token): show `public()` to people, never the record itself."""

    name: str
    kind: str
    target: dict[str, Any]
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Channel:
        channel: Channel = _from_row(cls, row)
        return channel
