"""Instance heartbeats and the reaper that turns dead instances' `running` rows into `abandoned`.

Each instance keeps `scheduler:instance:<instance_id>` alive with a TTL of three heartbeat periods;
its value is a per-process token. A `running` row of another instance is abandoned once that
instance's heartbeat has been seen missing for at least two heartbeat periods (an emptied Redis
loses every heartbeat at once, and live instances rewrite theirs within one period) and its
schedule's lock no longer holds that run's token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import redis

from services.errors import DatabaseError, DatabaseUnavailable
from services.lock.keys import schedule_lock_key
from services.log import get_logger
from services.store.executions import ExecutionStore

log = get_logger(__name__)
HEARTBEAT_KEY_PREFIX = "scheduler:instance:"


INSTANCE_STATUS_KEY_PREFIX = "scheduler:instance_status:"


def heartbeat_key(instance_id: str, prefix: str = "") -> str:
    return f"{prefix}{HEARTBEAT_KEY_PREFIX}{instance_id}"


def instance_status_key(instance_id: str, prefix: str = "") -> str:
    return f"{prefix}{INSTANCE_STATUS_KEY_PREFIX}{instance_id}"


def live_instances(redis_client: redis.Redis, prefix: str = "") -> set[str]:
    """Instance ids whose heartbeat key exists now."""
    start = len(prefix) + len(HEARTBEAT_KEY_PREFIX)
    keys = redis_client.scan_iter(match=f"{prefix}{HEARTBEAT_KEY_PREFIX}*", count=500)
    return {str(key)[start:] for key in keys}


def no_live_peers(redis_client: redis.Redis, instance_id: str, prefix: str = "") -> bool:
    """Whether no other instance is running. Catch-up is for occurrences missed while *no*
    instance ran: with peers alive, a persisted next_run in the past is theirs to run (or about
    to be), not a missed one. Redis unreachable counts as alone (the locks still decide)."""
    try:
        peers = live_instances(redis_client, prefix) - {instance_id}
    except redis.RedisError as exc:
        log.warning("scheduler.peers_unknown", error=str(exc))
        return True
    if peers:
        log.info("scheduler.catchup_left_to_peers", peers=sorted(peers)[:20])
    return not peers


def instance_summaries(redis_client: redis.Redis, prefix: str = "") -> list[dict[str, Any]]:
    """Each live instance, ordered by id: `{"instance_id": ..., **the summary its heartbeat
    keeps beside it}` (only the id when it wrote none)."""
    summaries = []
    for instance_id in sorted(live_instances(redis_client, prefix)):
        raw = redis_client.get(instance_status_key(instance_id, prefix))
        summary = json.loads(raw) if raw else {}
        summaries.append({"instance_id": instance_id, **summary})
    return summaries


class Heartbeat:
    def __init__(
        self,
        redis_client: redis.Redis,
        instance_id: str,
        interval: float,
        prefix: str = "",
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.redis = redis_client
        self.key = heartbeat_key(instance_id, prefix)
        # A JSON summary beside the heartbeat, so `scheduler.py status` can show every instance.
        self.status_key = instance_status_key(instance_id, prefix)
        self.describe = describe
        self.token = uuid.uuid4().hex
        self.ttl_ms = max(1, round(interval * 3 * 1000))
        self.healthy = False

    def beat(self) -> None:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self.key, self.token, px=self.ttl_ms)
                if self.describe is not None:
                    pipe.set(
                        self.status_key, json.dumps(self.describe(), default=str), px=self.ttl_ms
                    )
                pipe.execute()
        except redis.RedisError as exc:
            if self.healthy:
                log.warning("heartbeat.failed", key=self.key, error=str(exc))
            self.healthy = False
            return
        if not self.healthy:
            log.info("heartbeat.ok", key=self.key)
        self.healthy = True

    def remove(self) -> None:
        """Delete our heartbeat, only if it is still ours."""
        try:
            if self.redis.get(self.key) == self.token:
                self.redis.delete(self.key, self.status_key)
        except redis.RedisError as exc:
            log.warning("heartbeat.remove_failed", key=self.key, error=str(exc))


class Reaper:
    def __init__(
        self,
        store: ExecutionStore,
        redis_client: redis.Redis,
        *,
        heartbeat_interval: float,
        prefix: str = "",
        monotonic: Callable[[], float],
        on_abandoned: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.store = store
        self.redis = redis_client
        self.heartbeat_interval = heartbeat_interval
        self.prefix = prefix
        self.monotonic = monotonic
        self.on_abandoned = on_abandoned
        self._missing_since: dict[str, float] = {}

    def sweep(self) -> int:
        """One pass; returns how many rows it abandoned."""
        try:
            rows = self.store.running_rows_of_others()
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("reaper.database_unavailable", error=str(exc))
            return 0
        by_instance: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_instance.setdefault(row["instance_id"] or "", []).append(row)
        now = self.monotonic()
        abandoned = 0
        try:
            for instance_id, instance_rows in by_instance.items():
                if self.redis.exists(heartbeat_key(instance_id, self.prefix)):
                    self._missing_since.pop(instance_id, None)
                    continue
                since = self._missing_since.setdefault(instance_id, now)
                if now - since < 2 * self.heartbeat_interval:
                    continue
                abandoned += self._abandon_unlocked(instance_id, instance_rows)
        except redis.RedisError as exc:
            log.warning("reaper.redis_unavailable", error=str(exc))
        for gone in set(self._missing_since) - set(by_instance):
            del self._missing_since[gone]
        if abandoned:
            self.on_abandoned(abandoned)
        return abandoned

    def _abandon_unlocked(self, instance_id: str, rows: list[dict[str, Any]]) -> int:
        count = 0
        for row in rows:
            if row["schedule_id"] is not None:
                holder = self.redis.get(schedule_lock_key(row["schedule_id"], self.prefix))
                if holder is not None and str(holder).startswith(
                    f"{instance_id}|{row['execution_id']}|"
                ):
                    continue  # its lock still holds this run's token: not provably dead yet
            reason = (
                f"instance {instance_id} stopped heartbeating and its lock is gone; "
                "the run's outcome is unknown"
            )
            if self.store.abandon(row["execution_id"], reason):
                count += 1
                log.warning(
                    "reaper.abandoned",
                    execution_id=str(row["execution_id"]),
                    schedule_id=str(row["schedule_id"]),
                    instance=instance_id,
                )
        return count
