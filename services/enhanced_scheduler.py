"""EnhancedScheduler: builds the parts and runs the lifecycle (contract API of seed 001).

`start()` waits for the services, checks migrations, recovers this instance's leftovers, loads
every enabled schedule (with SCHEDULER_SHARDS > 1, those of the shards it leases), catching up
on occurrences missed while all instances were down, and starts the side loops; `run()` blocks
until SIGTERM/SIGINT, then shuts down gracefully. Each part gets the collaborators it uses; the
wiring below is the only place that knows them all.
"""

from __future__ import annotations

if __package__ in (None, ""):
    # Run as `python services/enhanced_scheduler.py` (seed 001): make `services` importable.
    import os.path
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import os
import signal
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import redis

from services.clock import Clock, SystemClock
from services.config import Settings, get_settings
from services.engine.assembly import build_engine
from services.engine.liveness import instance_summaries, no_live_peers
from services.engine.liveness_timing import LivenessTiming
from services.engine.run_requests import CHANNEL as REQUEST_CHANNEL
from services.errors import DatabaseError, DatabaseUnavailable, SchedulerError, StartupError
from services.lock.client import lock_client
from services.lock.sentinel import endpoint as redis_endpoint
from services.lock.target import RedisTarget
from services.log import configure_logging, get_logger, secrets_of
from services.metrics import Metrics
from services.model.occurrence import RunReport
from services.ops.sd_notify import sd_notify
from services.ops.shutdown import Shutdown, exit_even_if_a_handler_hangs
from services.ops.side_loops import build_side_loops
from services.ops.startup import check_migrations, wait_for_services
from services.ops.timer import TimerThread
from services.store.executions import ExecutionStore
from services.store.listen import NotificationListener
from services.store.pool import open_pool
from services.store.scheduler_state import CHANNEL as PAUSE_CHANNEL
from services.store.scheduler_state import SchedulerStateStore
from services.store.schedules import ScheduleRepository
from services.store.shards import ShardLeaseStore
from services.sync.service import zero_counts
from services.watch.assembly import build_watch
from services.watch.shard_keeper import ShardKeeper

if TYPE_CHECKING:
    from services.web.server import WebServer

log = get_logger(__name__)


class EnhancedScheduler:
    def __init__(
        self,
        max_workers: int | None = None,
        enable_api_sync: bool | None = None,
        api_sync_interval: float | None = None,
        schedule_check_interval: float | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = s = settings or get_settings()
        self.max_workers = max_workers or s.max_workers
        self.enable_api_sync = s.api_url is not None if enable_api_sync is None else enable_api_sync
        self.api_sync_interval = api_sync_interval or s.api_sync_interval
        self.schedule_check_interval = schedule_check_interval or s.schedule_check_interval
        self.instance_id = s.instance_id
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.metrics_registry = self.metrics.registry  # for /metrics
        self.redis_target = RedisTarget.from_settings(s)  # for /ready's own client
        self.stop_event = threading.Event()
        self.started = False
        self.started_at: str | None = None
        self.web: WebServer | None = None
        self.timer = TimerThread("timer", clock=self.clock)
        # A run must not hang long on a dead server: its result can wait (pool_timeout).
        self.db = open_pool(
            s.database_url,
            min_size=s.db_pool_min_size,
            max_size=s.db_pool_max_size,
            pool_timeout=5.0,
        )
        self.redis: redis.Redis = lock_client(
            self.redis_target, lock_timeout=s.lock_timeout, max_connections=s.redis_max_connections
        )
        self.store = ExecutionStore(self.db, self.instance_id, clock=self.clock)
        self.store.on_pending_change = self.metrics.pending_writes.set
        self.schedules = ScheduleRepository(self.db, default_timezone=s.scheduler_timezone)
        self._build_engine()
        self._build_side_loops()

    def _build_engine(self) -> None:
        s = self.settings
        engine = build_engine(
            s,
            max_workers=self.max_workers,
            store=self.store,
            read_schedule=self.schedules.get_schedule,
            read_pause=SchedulerStateStore(self.db).get,
            redis_client=self.redis,
            metrics=self.metrics,
            clock=self.clock,
            timer=self.timer,
            stop=self.stop_event,
        )
        self.engine, self.jobs, self.runner = engine, engine.jobs, engine.runner
        self.pipeline, self.handlers, self.pause = engine.pipeline, engine.handlers, engine.pause
        self.loader, self.watcher = build_watch(
            catalog=engine.catalog,
            jobs=self.jobs,
            schedules=self.schedules,
            listener=NotificationListener(self.db),
            sink=engine.firing,
            fire=engine.firing.fire,
            metrics=self.metrics,
            clock=self.clock,
            stop=self.stop_event,
            default_grace=s.job_misfire_grace_time,
            interval=self.schedule_check_interval,
        )
        timing = LivenessTiming.derive(
            lock_timeout=s.lock_timeout,
            heartbeat_interval=s.heartbeat_interval,
            check_interval=self.schedule_check_interval,
        )
        self.shard_keeper = ShardKeeper(
            ShardLeaseStore(self.db, self.instance_id, lease_seconds=s.lock_timeout),
            self.watcher,
            self.metrics,
            self.clock,
            shards=s.scheduler_shards,
            replicas=s.shard_replicas,
            settle=timing.beat,
            stop=self.stop_event,
        )

    def _build_side_loops(self) -> None:
        s = self.settings
        loops = build_side_loops(
            s,
            engine=self.engine,
            store=self.store,
            schedules=self.schedules,
            db=self.db,
            redis_client=self.redis,
            metrics=self.metrics,
            clock=self.clock,
            stop=self.stop_event,
            describe=self.summary,
            trigger=self.trigger_now,
            api_sync_interval=self.api_sync_interval,
            periodic_sync=self.enable_api_sync,
            check_interval=self.schedule_check_interval,
            shard_keeper=self.shard_keeper,
        )
        self.heartbeat, self.retry_recovery = loops.heartbeat, loops.retry_recovery
        self.api_sync, self.requests, self.threads = loops.api_sync, loops.requests, loops.threads
        self.notifications = loops.notifications
        self.watcher.channels[REQUEST_CHANNEL] = lambda _p: self.threads["run-requests"].poke()
        self.watcher.channels[PAUSE_CHANNEL] = lambda _p: self.threads["pause-switch"].poke()
        self._shutdown = Shutdown(
            stop=self.stop_event,
            jobs=self.jobs,
            pipeline=self.pipeline,
            runner=self.runner,
            store=self.store,
            loops=list(self.threads.values()),
            watcher=self.watcher,
            timeout=s.shutdown_timeout,
            clock=self.clock,
            remove_heartbeat=self.heartbeat.remove,
            leave_shards=self.shard_keeper.leave,
            closers=[
                self._stop_health,
                self.handlers.close,
                self.notifications.close,
                self.db.close,
                self.redis.close,
            ],
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, check, recover, load schedules and start firing. Raises StartupError."""
        s = self.settings
        log.info(
            "scheduler.starting",
            max_workers=self.max_workers,
            lock_timeout=s.lock_timeout,
            check_interval=self.schedule_check_interval,
        )
        if s.http_port != 0:
            # Before the wait for services, so that /health answers during start-up.
            self.web = self._build_web()
            self.web.start()
        wait_for_services(self.db, self.redis, s.startup_timeout, clock=self.clock)
        check_migrations(s.database_url, migrate_on_start=s.migrate_on_start)
        self.heartbeat.beat()
        leftovers = self.store.abandon_own_leftovers(
            f"instance {self.instance_id} restarted before the run finished"
        )
        if leftovers:
            log.warning("scheduler.recovered_leftovers", abandoned=len(leftovers))
        self.requests.release_own_claims()
        # Before the first fire (the load's catch-up included): started during a pause, the
        # instance stays paused; its loop follows the pause from now on.
        self.pause.load()
        self.threads["pause-switch"].start()
        self.jobs.start(paused=True)
        self.pipeline.start()
        if self.shard_keeper.enabled:
            owned, catch_up = self.shard_keeper.join()
            self.threads["shard-leases"].start()  # renews the leases while the load lasts
            self.watcher.initial_load(shards=owned, catch_up_shards=catch_up)
            self.shard_keeper.loaded()
        else:
            self.watcher.initial_load(
                catch_up=no_live_peers(self.redis, self.instance_id, s.redis_key_prefix)
            )
        self.jobs.resume()
        # Retries an earlier process of this instance left pending (it kept them in memory).
        self.retry_recovery.recover(including_own=True)
        for thread in self.threads.values():
            if not thread.alive:  # the pause switch's is already going
                thread.start()
        self.watcher.start()
        self.started = True
        self.started_at = self.clock.now().isoformat()
        sd_notify("READY=1")
        log.info("scheduler.started", jobs_loaded=self.loader.count, redis=str(self.redis_target))

    def run(self) -> int:
        """Block until SIGTERM/SIGINT (or stop()), then shut down. Returns the exit code."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        if not self.started:
            self.start()
        while not self.stop_event.wait(1.0):
            sd_notify("WATCHDOG=1")
            for thread in self.threads.values():
                thread.ensure_alive()
            self.watcher.ensure_alive()
        self.shutdown()
        return 0

    def stop(self) -> None:
        self.stop_event.set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("scheduler.signal", signal=signal.Signals(signum).name)
        self.stop_event.set()

    def shutdown(self) -> None:
        """Stop firing, let running jobs finish (SHUTDOWN_TIMEOUT), abandon the rest, release
        every lock, remove the heartbeat."""
        self._shutdown.run()

    def _build_web(self) -> WebServer:
        # Imported here, not at the top: FastAPI, pydantic, uvicorn and jinja2 cost a daemon with
        # HTTP_PORT=0 start-up time and memory for a part it never uses.
        from services.web.assembly import (
            DAEMON_API_THREADS,
            api_context,
            build_web_server,
            open_api_pool,
        )
        from services.web.limits import HttpLimits

        s = self.settings
        api_db = open_api_pool(s)
        api = api_context(
            s,
            api_db,
            live_instances=lambda: instance_summaries(self.redis, s.redis_key_prefix),
            clock=self.clock,
        )
        return build_web_server(
            self,
            host=s.http_host,
            port=s.http_port,
            clock=self.clock,
            api=api,
            closers=[api_db.close],
            worker_threads=DAEMON_API_THREADS,
            limits=HttpLimits.from_settings(s),
        )

    def _stop_health(self) -> None:
        if self.web is not None:
            self.web.stop()

    # -- contract API and what the CLI and HTTP ask of an instance ----------------------------

    def trigger_now(self, schedule_id: UUID | str, at: datetime | None = None) -> RunReport:
        """Run a schedule now (trigger='manual'), under the same lock and history; blocks.
        `at`: the occurrence a trigger request names (see FiringPolicy.trigger_now)."""
        return self.engine.firing.trigger_now(schedule_id, at)

    def sync_schedules_from_api(self) -> dict[str, int]:
        """Sync now under `lock:api_sync`: the counts {created, updated, skipped, invalid,
        disabled}, all zero when another instance holds the lock (it is syncing right now).
        Raises ApiSyncError (nothing changed) when the answer could not be read whole."""
        result = self.api_sync.run()
        return zero_counts() if result is None else dict(result.counts)

    # -- what /ready, /status and the heartbeat show ----------------------------------------

    def readiness_problem(self) -> str | None:
        if not self.started:
            return "not started"
        return "stopping" if self.stop_event.is_set() else None

    def check_database(self) -> None:
        if not self.db.ping():
            raise DatabaseUnavailable("PostgreSQL does not answer")

    def summary(self) -> dict[str, Any]:
        """What `scheduler.py status` shows about this instance (kept beside its heartbeat)."""
        return {
            "instance_id": self.instance_id,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "jobs_loaded": self.loader.count,
            "running": len(self.runner.active_runs()),
            "last_watcher_pass": self.watcher.last_pass,
            "last_sync": self.api_sync.status(),
            "paused": self.pause.current.paused,
            "shards": self.shard_keeper.describe(),
        }

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "started": self.started,
            "jobs_loaded": self.loader.count,
            "running_executions": [run.describe() for run in self.runner.active_runs()],
            "pending_result_writes": self.store.pending_count,
            "heartbeat_ok": self.heartbeat.healthy,
            "watcher": self.watcher.status(),
            "last_sync": self.api_sync.status(),
            "paused": self.pause.current.to_dict(),
            "redis": redis_endpoint(self.redis),
            "shards": self.shard_keeper.describe(),
        }


def run_enhanced_scheduler() -> int:
    """The daemon's entry point (`python scheduler.py run`): configure, start, run, exit code."""
    settings = get_settings()
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        instance_id=settings.instance_id,
        secrets=secrets_of(settings),
    )
    scheduler = EnhancedScheduler(settings=settings)
    try:
        code = scheduler.run()
    except (StartupError, DatabaseUnavailable, DatabaseError, SchedulerError) as exc:
        log.error("scheduler.start_failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        scheduler.shutdown()
        return 1
    exit_even_if_a_handler_hangs(code, scheduler.clock)
    return code


if __name__ == "__main__":
    sys.exit(run_enhanced_scheduler())
