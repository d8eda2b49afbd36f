"""One API item (seed-001 "API Schedule Format") → a validated schedule configuration.

See `sync/sync.py` for the mapping of fields.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from services.errors import InvalidScheduleError
from services.model.schedule_config import validate_config
from services.model.spec import COMMON_KEYS
from services.model.vocabulary import ScheduleSource
from services.sync.client import json_kind

# Fixed forever: ids already in the database depend on it.
# = uuid5(NAMESPACE_URL, "urn:enhanced-scheduler:api-sync:domain_config_id")
EXTERNAL_ID_NAMESPACE = UUID("c78870d7-d391-5e5d-9000-2235988421a9")
_DATA_COLUMNS = frozenset({"domain", "schedule", "job_type", "enabled"})
_SCHEDULE_KEYS = frozenset({"frequency", "time", *COMMON_KEYS})


# -- parsing items ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiItem:
    external_id: str  # domain_config_id exactly as the API sent it
    domain_config_id: UUID
    config: dict[str, Any]  # validated; MANAGED_FIELDS plus the rest of validate_config's keys


@dataclass(frozen=True)
class InvalidItem:
    domain_config_id: str | None  # as the API sent it; None when missing or not text
    reason: str
    mapped_id: UUID | None = None  # known even for a bad item: protects its row from DISABLE


def map_domain_config_id(value: str) -> tuple[UUID, bool]:
    """The UUID for an external id, and whether the id was a UUID itself."""
    if len(value) >= 32:  # UUID() only strips characters from its 32 hex digits: skip its raise
        try:
            return UUID(value), True
        except ValueError:
            pass
    return uuid5(EXTERNAL_ID_NAMESPACE, value), False


def _unstorable(value: Any, where: str) -> str | None:
    """Why PostgreSQL's jsonb would refuse `value` (a NUL character, a non-finite number)."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800": not valid UTF-8
            return f"{where} contains a character that is not valid Unicode"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} holds a number out of range"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key, where) or _unstorable(item, f"{where}.{key}")
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


def _storable_fast(*values: Any) -> bool:
    """True when jsonb surely accepts `values` (C-speed); False means: look closer."""
    try:
        text = json.dumps(values, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates cannot be encoded, nor stored
    except (ValueError, UnicodeEncodeError):
        return False
    return "\\u0000" not in text


def parse_item(raw: Any, *, default_timezone: str = "UTC") -> ApiItem:
    """Map and validate one item; raise InvalidScheduleError with the exact reason."""
    if not isinstance(raw, dict):
        raise InvalidScheduleError(f"item must be an object, got {json_kind(raw)}")
    external_id = raw.get("domain_config_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if not isinstance(external_id, str) or not external_id.strip():
        raise InvalidScheduleError(
            f"domain_config_id must be a non-empty string, got {external_id!r}"
        )
    mapped, is_uuid = map_domain_config_id(external_id)
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidScheduleError(f"data must be an object, got {json_kind(data)}")
    schedule = data.get("schedule")
    if not isinstance(schedule, dict):
        raise InvalidScheduleError(
            f"data.schedule must be an object with frequency and time, got {json_kind(schedule)}"
        )
    unknown = sorted(set(schedule) - _SCHEDULE_KEYS)
    if unknown:
        raise InvalidScheduleError(
            f"data.schedule has unknown key(s) {', '.join(unknown)}; allowed: frequency, time, "
            + ", ".join(COMMON_KEYS)
        )
    time_part = schedule.get("time", {})
    if not isinstance(time_part, dict):
        raise InvalidScheduleError(
            f"data.schedule.time must be an object, got {json_kind(time_part)}"
        )
    options = {key: schedule[key] for key in COMMON_KEYS if key in schedule}
    clashes = sorted(k for k, v in options.items() if k in time_part and time_part[k] != v)
    if clashes:
        raise InvalidScheduleError(
            f"data.schedule and data.schedule.time disagree on {', '.join(clashes)}"
        )
    payload = {key: value for key, value in data.items() if key not in _DATA_COLUMNS}
    if not is_uuid:
        payload["external_id"] = external_id  # the mapped UUID alone cannot be traced back
    time_config = {**time_part, **options}
    columns = {key: data.get(key) for key in ("domain", "job_type")}
    columns["schedule.frequency"] = schedule.get("frequency")
    if not _storable_fast(payload, time_config, columns):
        problem = (
            _unstorable(payload, "data")
            or _unstorable(time_config, "data.schedule")
            or _unstorable(columns, "data")
        )
        if problem:
            raise InvalidScheduleError(problem)
    config = validate_config(
        {
            "domain_config_id": mapped,
            "domain": data.get("domain"),
            "name": None,
            "profile_id": None,
            "frequency": schedule.get("frequency"),
            "time_config": time_config,
            "enabled": data.get("enabled", True),
            "job_type": data.get("job_type"),
            "payload": payload,
            "source": ScheduleSource.API.value,
        },
        default_timezone=default_timezone,
    )
    return ApiItem(external_id, mapped, config)


def parse_items(
    raws: Sequence[Any], *, default_timezone: str = "UTC"
) -> tuple[list[ApiItem], list[InvalidItem]]:
    """Valid items, and invalid ones with their reasons (in answer order)."""
    parsed: list[ApiItem | InvalidItem] = []
    for raw in raws:
        try:
            parsed.append(parse_item(raw, default_timezone=default_timezone))
        except InvalidScheduleError as exc:
            given = raw.get("domain_config_id") if isinstance(raw, dict) else None
            usable = isinstance(given, str | int) and not isinstance(given, bool)
            text = str(given) if usable and str(given).strip() else None
            mapped = map_domain_config_id(text)[0] if text is not None else None
            parsed.append(InvalidItem(text, exc.reason, mapped))
    occurrences = Counter(mapped_id(entry) for entry in parsed)
    valid: list[ApiItem] = []
    invalid: list[InvalidItem] = []
    for entry in parsed:
        mapped = mapped_id(entry)
        if mapped is not None and occurrences[mapped] > 1:
            given = entry.external_id if isinstance(entry, ApiItem) else entry.domain_config_id
            reason = f"domain_config_id {given!r} occurs {occurrences[mapped]} times in the answer"
            invalid.append(InvalidItem(given, reason, mapped))
        elif isinstance(entry, ApiItem):
            valid.append(entry)
        else:
            invalid.append(entry)
    return valid, invalid


def mapped_id(entry: ApiItem | InvalidItem) -> UUID | None:
    return entry.domain_config_id if isinstance(entry, ApiItem) else entry.mapped_id
