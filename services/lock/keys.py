"""The Redis key names (contract, DESIGN.md "Locks"); every key may carry a deployment prefix."""

from __future__ import annotations

from datetime import datetime

LOCK_KEY_PREFIX = "lock:"


def schedule_lock_key(schedule_id: object, prefix: str = "") -> str:
    return f"{prefix}{LOCK_KEY_PREFIX}schedule:{schedule_id}"


def api_sync_lock_key(prefix: str = "") -> str:
    return f"{prefix}{LOCK_KEY_PREFIX}api_sync"


def occurrence_lock_key(schedule_id: object, scheduled_for: datetime, prefix: str = "") -> str:
    """overlap_policy allow_all: one lock per occurrence, `lock:schedule:<id>:<epoch ms>`."""
    millis = round(scheduled_for.timestamp() * 1000)
    return f"{schedule_lock_key(schedule_id, prefix)}:{millis}"
