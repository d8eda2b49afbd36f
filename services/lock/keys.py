"""The Redis key names (contract, DESIGN.md "Locks"); every key may carry a deployment prefix."""

from __future__ import annotations

LOCK_KEY_PREFIX = "lock:"


def schedule_lock_key(schedule_id: object, prefix: str = "") -> str:
    return f"{prefix}{LOCK_KEY_PREFIX}schedule:{schedule_id}"


def api_sync_lock_key(prefix: str = "") -> str:
    return f"{prefix}{LOCK_KEY_PREFIX}api_sync"
