"""Daily pruning of finished runs older than HISTORY_RETENTION_DAYS, on one instance a day."""

from __future__ import annotations

import redis

from services.log import get_logger
from services.store.history import JobHistory

log = get_logger(__name__)
PRUNE_PERIOD_MS = 24 * 3600 * 1000


def history_cleanup_key(prefix: str = "") -> str:
    return f"{prefix}scheduler:history_cleanup"


class HistoryPruner:
    def __init__(
        self,
        history: JobHistory,
        redis_client: redis.Redis,
        *,
        retention_days: float,
        instance_id: str,
        prefix: str = "",
    ) -> None:
        self.history = history
        self.redis = redis_client
        self.retention_days = retention_days
        self.instance_id = instance_id
        self.key = history_cleanup_key(prefix)

    def step(self) -> None:
        if self.retention_days <= 0:
            return
        try:
            # The first instance to take the daily key prunes; the others see it and skip.
            if not self.redis.set(self.key, self.instance_id, nx=True, px=PRUNE_PERIOD_MS):
                return
        except redis.RedisError as exc:
            log.warning("history.prune_skipped", error=str(exc))
            return
        deleted = self.history.cleanup_old_executions(self.retention_days)
        log.info("history.pruned", deleted=deleted, retention_days=self.retention_days)
