"""A schedule's configuration columns, checked and normalised as a whole (no I/O).

The one validation every writer of `schedules` shares: the repository (CLI, REST API), the CLI's
`update` preview and the API sync's items. A row that fails it is refused with every reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from services.errors import InvalidScheduleError
from services.model.celery_payload import celery_payload_problems
from services.model.nats_subject import nats_payload_problems
from services.model.notify_rule import notify_problems
from services.model.spec import validate_schedule
from services.model.vocabulary import JobType, ScheduleSource

__all__ = [
    "CONFIG_FIELDS",
    "MAX_DOMAIN_LENGTH",
    "TAG_RULE",
    "as_uuid",
    "tag_errors",
    "unstorable",
    "validate_config",
]

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
    "tags",
    "notify",
)
MAX_DOMAIN_LENGTH = 255
MAX_NAME_LENGTH = 255
# The same rule as the database's CHECK schedules_tags_valid (migration 004).
_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
TAG_RULE = "1-64 characters of A-Z a-z 0-9 _ . : -"


def tag_errors(tags: object) -> list[str]:
    """What is wrong with a list of tags (nothing: an empty list)."""
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        return [f"tags must be a list of strings, got {type(tags).__name__}"]
    bad = [t for t in tags if not isinstance(t, str) or not _TAG.fullmatch(t)]
    if bad:
        return [f"tags {', '.join(repr(t) for t in bad)}: each tag must be {TAG_RULE}"]
    return []


def unstorable(value: object, field: str) -> str | None:
    """Why PostgreSQL could not store `value` (JSON or text), or None: a NUL character, a lone
    surrogate (not UTF-8), or a number JSON cannot hold (NaN, Infinity)."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return f"{field} must not contain NUL characters (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{field} must be valid Unicode text (it holds a lone surrogate)"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{field} must not hold NaN or Infinity (JSON has no such numbers)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def as_uuid(value: object, field: str) -> UUID:
    """`value` as a UUID; InvalidScheduleError naming `field` when it is not one."""
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
                clean[key] = as_uuid(clean[key], key)
            except InvalidScheduleError as exc:
                errors.append(exc.reason)
    domain = clean.get("domain")
    if not isinstance(domain, str) or not domain.strip():
        errors.append(f"domain must be a non-empty string, got {domain!r}")
    elif len(domain) > MAX_DOMAIN_LENGTH:
        errors.append(f"domain must be at most {MAX_DOMAIN_LENGTH} characters")
    name = clean.get("name")
    if name is not None and not isinstance(name, str):
        errors.append(f"name must be a string or null, got {type(name).__name__}")
    elif isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        errors.append(f"name must be at most {MAX_NAME_LENGTH} characters")
    for field in ("domain", "name", "time_config", "payload", "notify"):
        problem = unstorable(clean.get(field), field)
        if problem:
            errors.append(problem)
    job_type = clean.get("job_type")
    if job_type is not None and (
        not isinstance(job_type, str) or job_type not in {t.value for t in JobType}
    ):
        allowed = ", ".join(t.value for t in JobType)
        errors.append(f"job_type {job_type!r} is not one of: {allowed} (or NULL for the default)")
    if not isinstance(clean.get("payload", {}), dict):
        errors.append(f"payload must be a JSON object, got {type(clean.get('payload')).__name__}")
    elif job_type == JobType.NATS:
        # The shape only: the subject allowlist is the daemon's setting, checked when it loads
        # the row (a row with no job_type takes DEFAULT_JOB_TYPE there too).
        errors.extend(nats_payload_problems(clean.get("payload") or {}))
    elif job_type == JobType.CELERY:
        # The shape only: the allowlist is the daemon's setting, checked when it loads the row.
        errors.extend(celery_payload_problems(clean.get("payload", {}), None))
    tags = clean.get("tags")
    tag_problems = [] if tags is None else tag_errors(tags)
    errors.extend(tag_problems)
    if tags is not None and not tag_problems:
        clean["tags"] = list(dict.fromkeys(tags))
    notify = clean.get("notify")
    if notify is not None:
        errors.extend(notify_problems(notify))
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
        raise InvalidScheduleError("; ".join(errors), problems=errors)
    return clean
