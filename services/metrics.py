"""Prometheus metrics (contract names). One registry per scheduler, exposed on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.schedules_loaded = Gauge(
            "scheduler_schedules_loaded", "Schedules loaded into the scheduler", registry=r
        )
        self.shards_owned = Gauge(
            "scheduler_shards_owned", "Shards this instance owns and has loaded", registry=r
        )
        self.executions = Counter(
            "scheduler_executions", "Finished executions by status", ["status"], registry=r
        )
        self.execution_duration = Histogram(
            "scheduler_execution_duration_seconds",
            "Handler run time",
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.fire_lateness = Histogram(
            "scheduler_fire_lateness_seconds",
            "Handler start minus scheduled time",
            registry=r,
            buckets=LATENESS_BUCKETS,
        )
        self.misfires = Counter(
            "scheduler_misfires",
            "Occurrences not run (late, Redis down, overlap, scheduler paused)",
            ["reason"],
            registry=r,
        )
        self.overlap_decisions = Counter(
            "scheduler_overlap_decisions",
            "What occurrences did when an earlier run of their schedule was going",
            ["policy", "decision"],
            registry=r,
        )
        self.lock_conflicts = Counter(
            "scheduler_lock_conflicts", "Lock already held when an occurrence fired", registry=r
        )
        self.lock_lost = Counter(
            "scheduler_lock_lost", "Locks lost while their run was going", registry=r
        )
        self.watch_duration = Histogram(
            "scheduler_watch_duration_seconds", "Schedule watcher pass duration", registry=r
        )
        self.watch_changes = Counter(
            "scheduler_watch_changes", "Changes applied by the watcher", ["kind"], registry=r
        )
        self.api_sync = Counter(
            "scheduler_api_sync", "API sync runs by result", ["result"], registry=r
        )
        self.running_executions = Gauge(
            "scheduler_running_executions", "Executions running on this instance", registry=r
        )
        # Known label values exist from the start, so dashboards see zeros rather than gaps.
        for status in (
            "completed",
            "failed",
            "timed_out",
            "abandoned",
            "cancelled",
            "skipped",
            "queued",
        ):
            self.executions.labels(status=status)
        for reason in ("late", "coalesced", "overlap", "redis", "database", "downtime", "paused"):
            self.misfires.labels(reason=reason)
        for kind in ("added", "updated", "removed", "invalid", "expired", "disabled"):
            self.watch_changes.labels(kind=kind)
        for result in ("success", "failed", "skipped_locked"):
            self.api_sync.labels(result=result)
        self.pending_writes = Gauge(
            "scheduler_pending_result_writes", "Results waiting for PostgreSQL", registry=r
        )
        self.notifications = Counter(
            "scheduler_notifications",
            "Notification deliveries by channel, event and result",
            ["channel", "event", "result"],
            registry=r,
        )
        self.notification_outbox_depth = Gauge(
            "scheduler_notification_outbox_depth",
            "Notifications waiting in the outbox (all instances)",
            registry=r,
        )
