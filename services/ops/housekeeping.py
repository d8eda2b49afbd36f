"""Daily pruning, each on one instance a day: finished runs older than HISTORY_RETENTION_DAYS,
audit rows older than AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from collections.abc import Callable

import redis

from services.log import get_logger
from services.store.audit import AuditStore
from services.store.history import JobHistory

log = get_logger(__name__)
PRUNE_PERIOD_MS = 24 * 3600 * 1000


def history_cleanup_key(prefix: str = "") -> str:
    return f"{prefix}scheduler:history_cleanup"


def audit_cleanup_key(prefix: str = "") -> str:
    return f"{prefix}scheduler:audit_cleanup"


class DailyPruner:
    """Calls `prune(retention_days)` once a day across all instances: the first instance to take
    the day's Redis key prunes, the others see it and skip. 0 days keeps everything."""

    def __init__(
        self,
        what: str,
        prune: Callable[[float], int],
        redis_client: redis.Redis,
        *,
        key: str,
        retention_days: float,
        instance_id: str,
    ) -> None:
        self.what = what
        self.prune = prune
        self.redis = redis_client
        self.key = key
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


class HistoryPruner(DailyPruner):
    def __init__(
        self,
        history: JobHistory,
        redis_client: redis.Redis,
        *,
        retention_days: float,
        instance_id: str,
        prefix: str = "",
    ) -> None:
        super().__init__(
            "history",
            history.cleanup_old_executions,
            redis_client,
            key=history_cleanup_key(prefix),
            retention_days=retention_days,
            instance_id=instance_id,
        )
        self.history = history


class AuditPruner(DailyPruner):
    def __init__(
        self,
        audit: AuditStore,
        redis_client: redis.Redis,
        *,
        retention_days: float,
        instance_id: str,
        prefix: str = "",
    ) -> None:
        super().__init__(
            "audit",
            audit.prune,
            redis_client,
            key=audit_cleanup_key(prefix),
            retention_days=retention_days,
            instance_id=instance_id,
        )
        self.audit = audit
