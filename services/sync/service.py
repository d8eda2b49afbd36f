"""ApiSyncService: the API sync, one instance at a time, periodic or on demand.

Each sync (`sync.ApiSync`) runs under the Redis lock `lock:api_sync`; its outcome is counted in
`scheduler_api_sync_total{result}` and kept for `status`. A failed periodic sync is logged and
counted, never raised: the next interval tries again.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from services.clock import SYSTEM_CLOCK, Clock
from services.config import Settings
from services.errors import ApiSyncError, LockUnavailable, SchedulerError
from services.lock.keys import api_sync_lock_key
from services.lock.lock import DistributedLock
from services.log import get_logger
from services.metrics import Metrics
from services.ops.timer import TimerThread
from services.store.schedules import ScheduleRepository
from services.sync.sync import COUNT_KEYS, ApiSync, SyncResult

__all__ = ["ApiSyncService", "last_sync_key", "zero_counts"]

log = get_logger(__name__)


def zero_counts() -> dict[str, int]:
    """The counts of a sync that did not run (another instance held the lock)."""
    return dict.fromkeys(COUNT_KEYS, 0)


def last_sync_key(prefix: str = "") -> str:
    return f"{prefix}scheduler:api_sync:last"


class ApiSyncService:
    """Runs ApiSync under `lock:api_sync` with metrics and the last result for `status`.

    After each attempt (success or failure) a marker key lives for a little less than the
    interval; a periodic step that finds it skips, so instances whose timers are out of phase
    still make one attempt per interval between them. Manual syncs ignore the marker.
    """

    def __init__(
        self,
        schedules: ScheduleRepository,
        redis_client: redis.Redis,
        settings: Settings,
        metrics: Metrics,
        *,
        interval: float | None = None,
        stop: threading.Event | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timer: TimerThread | None = None,
        **client_options: Any,
    ) -> None:
        self.clock = clock
        self.timer = timer  # None: the lock renews on the process-wide timer
        self.schedules = schedules
        self.redis = redis_client
        self.settings = settings
        self.metrics = metrics
        self.interval = interval or settings.api_sync_interval
        self.stop = stop
        self.client_options = client_options
        self.last: dict[str, Any] | None = None

    def run(self, *, periodic: bool = False, lock_wait: float = 0.0) -> SyncResult | None:
        """One locked sync; None when skipped (another instance holds the lock, or with
        `periodic`, synced within the interval). Raises ApiSyncError, or LockUnavailable when
        Redis cannot be asked (never syncs unlocked)."""
        sync = ApiSync.from_settings(
            self.schedules, self.settings, stop=self.stop, clock=self.clock, **self.client_options
        )
        key = api_sync_lock_key(self.settings.redis_key_prefix)
        lock = DistributedLock(
            self.redis,
            key,
            self.settings.lock_timeout,
            self.settings.instance_id,
            timer=self.timer,
            clock=self.clock,
        )
        try:
            taken = lock.acquire(wait=lock_wait)
        except LockUnavailable:
            self._count("skipped_no_redis")
            raise
        if not taken:
            self._count("skipped_locked")
            log.info("api_sync.skipped", reason="another instance is syncing", key=key)
            return None
        try:
            if periodic and self._synced_recently():
                self._count("skipped_recent")
                log.debug("api_sync.skipped", reason="synced within the interval")
                return None
            return self._run_recorded(sync, periodic=periodic)
        finally:
            lock.release()

    def step(self) -> None:
        """The periodic side loop's step: failures are logged and counted, never raised."""
        try:
            self.run(periodic=True)
        except LockUnavailable as exc:
            log.warning("api_sync.skipped", reason=str(exc))
        except SchedulerError:
            pass  # logged and counted by _run_recorded

    def _run_recorded(self, sync: ApiSync, *, periodic: bool) -> SyncResult:
        started = self.clock.monotonic()
        try:
            result = sync.sync()
        except SchedulerError as exc:  # ApiSyncError, or the database failing mid-apply
            case = exc.case if isinstance(exc, ApiSyncError) else "database"
            self._count("failed")
            self._remember("failed", None, started, error=str(exc), case=case)
            # A manual caller gets the exception and reports it; only the side loop logs it.
            (log.error if periodic else log.info)("api_sync.failed", case=case, error=str(exc))
            raise
        finally:
            self._mark_synced()
        self._count("success")
        self._remember("success", result.counts, started)
        return result

    def _synced_recently(self) -> bool:
        try:
            return bool(self.redis.exists(last_sync_key(self.settings.redis_key_prefix)))
        except redis.RedisError:
            return False  # we hold the lock: syncing once too often is harmless

    def _mark_synced(self) -> None:
        # A little under the interval, so this instance's own next step finds it expired.
        ttl = self.interval - min(1.0, self.interval * 0.1)
        try:
            self.redis.set(
                last_sync_key(self.settings.redis_key_prefix),
                self.settings.instance_id,
                px=max(1, int(ttl * 1000)),
            )
        except redis.RedisError as exc:
            log.warning("api_sync.marker_failed", error=str(exc))

    def _count(self, result: str) -> None:
        self.metrics.api_sync.labels(result=result).inc()

    def _remember(
        self,
        result: str,
        counts: dict[str, int] | None,
        started: float,
        *,
        error: str | None = None,
        case: str | None = None,
    ) -> None:
        self.last = {
            "finished_at": self.clock.now().isoformat(),
            "result": result,
            "counts": counts,
            "duration_s": round(self.clock.monotonic() - started, 3),
            "error": error,
            "case": case,
        }

    def status(self) -> dict[str, Any] | None:
        """This instance's last sync attempt, or None before the first."""
        return None if self.last is None else dict(self.last)
