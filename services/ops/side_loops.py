"""The daemon's side loops, each a named ServiceThread: the pause switch, heartbeat, reaper,
retry recovery, result writer, history, audit and notification pruners, run requests, the
overlap queue, the notification producer and delivery, and (when configured) the API sync and the
shard keeper."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import redis

from services.clock import Clock
from services.config import Settings
from services.engine.assembly import Engine
from services.engine.liveness import Heartbeat, Reaper
from services.engine.liveness_timing import LivenessTiming
from services.engine.parking import ResultWriter
from services.engine.pause import REFRESH_SECONDS as PAUSE_REFRESH_SECONDS
from services.engine.queue import POLL_SECONDS as QUEUE_POLL_SECONDS
from services.engine.retry_recovery import RetryRecovery
from services.engine.run_requests import POLL_SECONDS as REQUEST_POLL_SECONDS
from services.engine.run_requests import RequestProcessor
from services.metrics import Metrics
from services.model.occurrence import RunReport
from services.notify.assembly import Notifications, build_notifications
from services.notify.delivery import POLL_SECONDS as DELIVERY_POLL_SECONDS
from services.ops.housekeeping import DailyPruner
from services.ops.service_thread import ServiceThread
from services.store.audit import AuditStore
from services.store.executions import ExecutionStore
from services.store.history import JobHistory
from services.store.pool import DatabaseConnection
from services.store.run_requests import RunRequestStore
from services.store.schedules import ScheduleRepository
from services.sync.service import ApiSyncService
from services.watch.shard_keeper import ShardKeeper


@dataclass(frozen=True)
class SideLoops:
    heartbeat: Heartbeat
    retry_recovery: RetryRecovery
    api_sync: ApiSyncService
    requests: RequestProcessor
    notifications: Notifications
    threads: dict[str, ServiceThread]


def build_side_loops(
    s: Settings,
    *,
    engine: Engine,
    store: ExecutionStore,
    schedules: ScheduleRepository,
    db: DatabaseConnection,
    redis_client: redis.Redis,
    metrics: Metrics,
    clock: Clock,
    stop: threading.Event,
    describe: Callable[[], dict[str, Any]],
    trigger: Callable[[UUID | str, datetime | None], RunReport],
    api_sync_interval: float,
    periodic_sync: bool,
    check_interval: float,
    shard_keeper: ShardKeeper,
) -> SideLoops:
    """`periodic_sync` False: the API sync runs only on request (`sync_schedules_from_api`).
    `check_interval`: the instance's schedule check interval (the reaper's bound counts it)."""
    timing = LivenessTiming.derive(
        lock_timeout=s.lock_timeout,
        heartbeat_interval=s.heartbeat_interval,
        check_interval=check_interval,
    )
    heartbeat = Heartbeat(
        redis_client, s.instance_id, timing, s.redis_key_prefix, describe, clock.monotonic
    )
    request_store = RunRequestStore(db)
    reaper = Reaper(
        store,
        redis_client,
        heartbeat,
        prefix=s.redis_key_prefix,
        monotonic=clock.monotonic,
        requests=request_store,
    )
    retry_recovery = RetryRecovery(
        store,
        redis_client,
        instance_id=s.instance_id,
        policy=engine.runner.retry_policy,
        clock=clock,
        loaded=engine.retries.loaded_for,
        schedule_retry=engine.retries.schedule,
        prefix=s.redis_key_prefix,
    )
    writer = ResultWriter(
        store, engine.parking, engine.runner, engine.pipeline, coalesce=s.job_coalesce
    )

    def daily(what: str, prune: Callable[[float], int], days: float) -> DailyPruner:
        prefix = s.redis_key_prefix
        return DailyPruner(
            what, prune, redis_client, retention_days=days, instance_id=s.instance_id, prefix=prefix
        )

    history = daily("history", JobHistory(db).cleanup_old_executions, s.history_retention_days)
    audit = daily("audit", AuditStore(db).prune, s.audit_retention_days)
    notifications = build_notifications(s, db, metrics)
    notified = daily("notifications", notifications.store.prune, s.notify_retention_days)
    api_sync = ApiSyncService(
        schedules,
        redis_client,
        s,
        metrics,
        interval=api_sync_interval,
        stop=stop,
        clock=clock,
        timer=engine.runner.timer,
    )
    requests = RequestProcessor(
        request_store,
        engine.runner,
        s.instance_id,
        trigger=trigger,
        submit=engine.jobs.run_now,
        shards=lambda: shard_keeper.watcher.shards,
    )
    loops = [
        ("pause-switch", engine.pause.refresh, PAUSE_REFRESH_SECONDS),
        ("heartbeat", heartbeat.beat, timing.beat),
        ("reaper", reaper.sweep, timing.sweep),
        # Its "missing for two passes" rule assumes passes at least a beat apart.
        ("retry-recovery", retry_recovery.recover, timing.beat),
        ("result-writer", writer.step, 1.0),
        ("history-pruner", history.step, 3600.0),
        ("audit-pruner", audit.step, 3600.0),
        ("run-requests", requests.process, REQUEST_POLL_SECONDS),
        ("overlap-queue", engine.queue.step, QUEUE_POLL_SECONDS),
        ("notify-producer", lambda: produce(), s.notify_check_interval),
        ("notify-delivery", notifications.delivery.run_once, DELIVERY_POLL_SECONDS),
        ("notify-pruner", notified.step, 3600.0),
    ]
    if shard_keeper.enabled:
        loops.append(("shard-leases", shard_keeper.renew_leases, timing.beat))
        loops.append(("shard-keeper", shard_keeper.round, timing.beat))
    if periodic_sync and s.api_url:
        loops.append(("api-sync", api_sync.step, api_sync_interval))
    threads = {name: ServiceThread(name, step, period, stop) for name, step, period in loops}

    def produce() -> None:
        if notifications.producer.run_once():  # new events go out now, not at the next poll
            threads["notify-delivery"].poke()

    # A run that ends here, or an occurrence queued here, wakes the queue loop at once.
    engine.runner.after_complete = threads["overlap-queue"].poke
    if engine.runner.overlap is not None:
        engine.runner.overlap.poke = threads["overlap-queue"].poke
    return SideLoops(heartbeat, retry_recovery, api_sync, requests, notifications, threads)
