"""Retries that died with their instance are scheduled again, by any instance.

A retry waits in the memory of the instance whose attempt failed. Should that instance stop
before the retry's time (killed, restarted, shut down), the failed row is all that is left. This
pass finds such rows: a retryable failure whose next attempt has no row, left by an instance
whose heartbeat has been missing for two passes (an emptied Redis loses every heartbeat at once;
live instances rewrite theirs within one period), or by an earlier process of this very instance
(at start-up). The retry is scheduled here, at its own due time or now if that has passed. Two
instances recovering the same retry is harmless: the lock and the claim keep it to one run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import redis

from services.clock import Clock
from services.engine.liveness import heartbeat_key
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.model.occurrence import LoadedSchedule, Occurrence, retry_job_id
from services.model.retry import RetryPolicy
from services.model.vocabulary import RunTrigger
from services.store.executions import ExecutionStore

log = get_logger(__name__)


class RetryRecovery:
    def __init__(
        self,
        store: ExecutionStore,
        redis_client: redis.Redis,
        *,
        instance_id: str,
        policy: RetryPolicy,
        clock: Clock,
        loaded: Callable[[UUID], LoadedSchedule | None],
        schedule_retry: Callable[[Occurrence, datetime], None],
        prefix: str = "",
    ) -> None:
        self.store = store
        self.redis = redis_client
        self.instance_id = instance_id
        self.policy = policy
        self.clock = clock
        self.loaded = loaded
        self.schedule_retry = schedule_retry
        self.prefix = prefix
        self._missing: set[str] = set()  # instances whose heartbeat the last pass missed

    def recover(self, *, including_own: bool = False) -> int:
        """One pass; returns how many retries it scheduled. `including_own`: at start-up, when
        this process holds no retry in memory, rows of our own INSTANCE_ID count as orphaned."""
        try:
            rows = self.store.orphaned_retries()
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("retry_recovery.database_unavailable", error=str(exc))
            return 0
        try:
            dead = self._dead_instances({row["instance_id"] or "" for row in rows})
        except redis.RedisError as exc:
            log.warning("retry_recovery.redis_unavailable", error=str(exc))
            return 0
        if including_own:
            dead.add(self.instance_id)
        else:
            dead.discard(self.instance_id)
        return sum(self._reschedule(row) for row in rows if (row["instance_id"] or "") in dead)

    def _dead_instances(self, instance_ids: set[str]) -> set[str]:
        missing = {i for i in instance_ids if not self.redis.exists(heartbeat_key(i, self.prefix))}
        dead = missing & self._missing
        self._missing = missing
        return dead

    def _reschedule(self, row: dict[str, Any]) -> bool:
        loaded = self.loaded(row["schedule_id"])
        attempt = int(row["attempt"])
        if loaded is None or attempt >= self.policy.attempts_for(loaded.spec.max_retries):
            return False  # removed, disabled, or out of attempts
        now = self.clock.now()
        completed: datetime = row["completed_at"] or now
        due = max(now, completed + timedelta(seconds=self.policy.delay(attempt)))
        scheduled_for: datetime = row["scheduled_for"]
        occ = Occurrence(
            loaded,
            scheduled_for,
            due,
            attempt + 1,
            RunTrigger.RETRY,
            job_id=retry_job_id(loaded.schedule_id, scheduled_for, attempt + 1),
        )
        self.schedule_retry(occ, due)
        log.warning(
            "retry_recovery.rescheduled",
            schedule_id=str(loaded.schedule_id),
            scheduled_for=scheduled_for.isoformat(),
            attempt=attempt + 1,
            failed_on=row["instance_id"],
            due=due.isoformat(),
        )
        return True
