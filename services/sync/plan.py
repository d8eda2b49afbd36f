"""What one sync changes: the plan built from the database's diff of the API's answer.

PostgreSQL compares the incoming items with the `source='api'` rows (the schedules store's
`ApiRows.differing`/`missing`) and only differences come back; `plan_sync` turns them into
creates, updates (naming the managed columns that change) and disables. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from services.sync.items import ApiItem

__all__ = ["MANAGED_FIELDS", "Change", "Plan", "plan_sync"]

# The columns the API owns; `name` and `profile_id` are not the API's and are never written.
MANAGED_FIELDS = ("domain", "frequency", "time_config", "enabled", "job_type", "payload")


@dataclass(frozen=True)
class Change:
    action: str  # create | update | disable
    domain_config_id: str
    domain: str
    external_id: str | None = None
    schedule_id: str | None = None
    fields: tuple[str, ...] = ()  # for an update: the columns that change

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fields": list(self.fields)}


@dataclass(frozen=True)
class Plan:
    creates: list[ApiItem]
    updates: list[tuple[UUID, ApiItem]]  # (schedule_id, item)
    disables: list[UUID]  # schedule_ids
    unchanged: int
    changes: list[Change]


def plan_sync(
    items: Iterable[ApiItem],
    differing: Iterable[Mapping[str, Any]],
    missing: Iterable[Mapping[str, Any]] = (),
) -> Plan:
    """The plan from the database's diff: `differing` rows (diff_api_rows: an item's id, its
    row's schedule_id or None when new, one boolean per managed column) and `missing` rows
    (missing_api_rows). Items not in `differing` are unchanged."""
    by_id = {item.domain_config_id: item for item in items}
    creates: list[ApiItem] = []
    updates: list[tuple[UUID, ApiItem]] = []
    changes: list[Change] = []
    for row in differing:
        item = by_id[row["domain_config_id"]]
        key, domain = str(item.domain_config_id), item.config["domain"]
        external = item.config["payload"].get("external_id")
        if row["schedule_id"] is None:
            creates.append(item)
            changes.append(Change("create", key, domain, external))
        else:
            changed = tuple(name for name in MANAGED_FIELDS if row[name])
            updates.append((row["schedule_id"], item))
            changes.append(
                Change("update", key, domain, external, str(row["schedule_id"]), changed)
            )
    disables: list[UUID] = []
    for row in missing:
        disables.append(row["schedule_id"])
        changes.append(
            Change(
                "disable",
                str(row["domain_config_id"]),
                row["domain"],
                row["external_id"],
                str(row["schedule_id"]),
            )
        )
    unchanged = len(by_id) - len(creates) - len(updates)
    return Plan(creates, updates, disables, unchanged, changes)
