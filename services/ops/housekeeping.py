"""Daily pruning, each on one instance a day: finished runs older than HISTORY_RETENTION_DAYS,
audit rows older than AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from collections.abc import Callable

import redis

from services.log import get_logger

log = get_logger(__name__)
PRUNE_PERIOD_MS = 24 * 3600 * 1000


def cleanup_key(what: str, prefix: str = "") -> str:
    """The day's key of one kind of pruning (`scheduler:history_cleanup`, `..._audit_cleanup`)."""
    return f"{prefix}scheduler:{what}_cleanup"


class DailyPruner:
    """Calls `prune(retention_days)` once a day across all instances: the first instance to take
    the day's Redis key prunes, the others see it and skip. 0 days keeps everything."""

    def __init__(
        self,
        what: str,
        prune: Callable[[float], int],
        redis_client: redis.Redis,
        *,
        retention_days: float,
        instance_id: str,
        prefix: str = "",
    ) -> None:
        self.what = what
        self.prune = prune
        self.redis = redis_client
        self.key = cleanup_key(what, prefix)
        self.retention_days = retention_days
        self.instance_id = instance_id

    def step(self) -> None:
        if self.retention_days <= 0:
            return
        try:
            if not self.redis.set(self.key, self.instance_id, nx=True, px=PRUNE_PERIOD_MS):
                return
        except redis.RedisError as exc:
            log.warning(f"{self.what}.prune_skipped", error=str(exc))
            return
        deleted = self.prune(self.retention_days)
        log.info(f"{self.what}.pruned", deleted=deleted, retention_days=self.retention_days)
