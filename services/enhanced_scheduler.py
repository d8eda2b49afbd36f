"""EnhancedScheduler: wires settings, PostgreSQL, Redis, APScheduler and the job runner.

`start()` waits for the services, checks migrations, recovers this instance's leftovers, loads
every enabled schedule (catching up on occurrences missed while all instances were down), and
starts the side loops; `run()` blocks until SIGTERM/SIGINT, then shuts down gracefully.
"""

from __future__ import annotations

if __package__ in (None, ""):
    # Run as `python services/enhanced_scheduler.py` (seed 001): make `services` importable.
    import os.path
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from database.connection import DatabaseConnection
from services.clock import Clock, SystemClock
from services.config import Settings, get_settings
from services.engine.handlers import build_handler_registry
from services.engine.liveness import Heartbeat, Reaper, live_instances
from services.engine.pipeline import RunPipeline
from services.engine.retry_recovery import RetryRecovery
from services.engine.run_requests import CHANNEL as REQUEST_CHANNEL
from services.engine.run_requests import POLL_SECONDS as REQUEST_POLL_SECONDS
from services.engine.run_requests import RequestProcessor
from services.engine.runner import JobRunner
from services.errors import (
    DatabaseError,
    DatabaseUnavailable,
    InvalidScheduleError,
    ScheduleNotFound,
    SchedulerError,
)
from services.lock.client import create_redis_client
from services.log import configure_logging, get_logger, secrets_of
from services.metrics import Metrics
from services.model.occurrence import LoadedSchedule, Occurrence, RunReport, retry_job_id
from services.model.records import Schedule
from services.model.retry import RetryPolicy
from services.model.vocabulary import RunTrigger
from services.ops.sd_notify import sd_notify
from services.ops.service_thread import ServiceThread
from services.ops.startup import StartupError, check_migrations, wait_for_services
from services.ops.timer import shared_timer
from services.scheduling.executor import OccurrenceExecutor
from services.scheduling.job_store import HeapJobStore
from services.store.executions import ExecutionStore
from services.store.history import JobHistory
from services.sync.sync import ApiSyncService, zero_counts
from services.watch.loader import ScheduleLoader
from services.watch.watcher import ScheduleWatcher
from services.web.health import HealthServer

log = get_logger(__name__)
PRUNE_PERIOD_MS = 24 * 3600 * 1000
MAX_PARKED = 10_000  # occurrences waiting for PostgreSQL; beyond that they are recorded skipped


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
        self.settings = settings or get_settings()
        s = self.settings
        self.max_workers = max_workers or s.max_workers
        self.enable_api_sync = s.api_url is not None if enable_api_sync is None else enable_api_sync
        self.api_sync_interval = api_sync_interval or s.api_sync_interval
        self.schedule_check_interval = schedule_check_interval or s.schedule_check_interval
        self.instance_id = s.instance_id
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.stop_event = threading.Event()
        self.started = False
        self.started_at: str | None = None
        self._stopped = False
        self.health: HealthServer | None = None
        self.db = DatabaseConnection(
            s.database_url,
            min_size=s.db_pool_min_size,
            max_size=s.db_pool_max_size,
            pool_timeout=5.0,  # a run must not hang long on a dead server: its result can wait
        )
        # Socket time-outs well under LOCK_TIMEOUT/3 so a hung Redis is noticed before a lock
        # could expire under a run.
        self.redis: redis.Redis = create_redis_client(
            s.redis_url,
            max_connections=s.redis_max_connections,
            socket_timeout=min(5.0, s.lock_timeout / 6),
            connect_timeout=min(5.0, s.lock_timeout / 6),
        )
        self.store = ExecutionStore(self.db, self.instance_id)
        self.store.on_pending_change = self.metrics.pending_writes.set
        self.handlers = build_handler_registry(
            http_allowed_hosts=s.http_allowed_hosts,
            job_webhook_url=s.job_webhook_url,
            command_allowlist=s.command_allowlist,
            python_handler_allowlist=s.python_handler_allowlist,
            request_timeout=s.request_timeout,
        )
        self.runner = JobRunner(
            store=self.store,
            redis_client=self.redis,
            handlers=self.handlers,
            metrics=self.metrics,
            clock=self.clock,
            retry_policy=RetryPolicy(
                s.retry_initial_delay,
                s.retry_backoff_base,
                s.retry_max_delay,
                s.retry_max_attempts,
            ),
            instance_id=self.instance_id,
            lock_ttl=s.lock_timeout,
            default_grace=s.job_misfire_grace_time,
            default_timeout=s.job_timeout,
            default_job_type=s.default_job_type,
            key_prefix=s.redis_key_prefix,
            schedule_retry=self._schedule_retry,
            park=self._park,
            recheck=self._recheck_later,
        )
        self._parked: list[Occurrence] = []
        self._parked_lock = threading.Lock()
        self.executor = OccurrenceExecutor(
            self.max_workers, on_overlap=self._on_overlap, dispatch=self._dispatch
        )
        self.pipeline = RunPipeline(self.runner, self.max_workers)
        self.job_store = HeapJobStore()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.job_store},
            executors={"default": self.executor},
            job_defaults={
                "coalesce": False,  # we coalesce ourselves, recording what we drop
                "max_instances": s.job_max_instances,
                "misfire_grace_time": None,  # checked by the runner, per schedule
            },
            timezone="UTC",
        )
        self.loader = ScheduleLoader(self)
        self.watcher = ScheduleWatcher(
            self.db,
            self.loader,
            self.metrics,
            self.clock,
            database_url=s.database_url,
            interval=self.schedule_check_interval,
            stop=self.stop_event,
        )
        self.heartbeat = Heartbeat(
            self.redis,
            self.instance_id,
            s.heartbeat_interval,
            s.redis_key_prefix,
            describe=self.summary,
        )
        self.reaper = Reaper(
            self.store,
            self.redis,
            heartbeat_interval=s.heartbeat_interval,
            prefix=s.redis_key_prefix,
            monotonic=self.clock.monotonic,
        )
        self.retry_recovery = RetryRecovery(
            self.store,
            self.redis,
            instance_id=self.instance_id,
            policy=self.runner.retry_policy,
            clock=self.clock,
            loaded=self.loaded_for_retry,
            schedule_retry=self._schedule_retry,
            prefix=s.redis_key_prefix,
        )
        self.threads = [
            ServiceThread("heartbeat", self.heartbeat.beat, s.heartbeat_interval, self.stop_event),
            ServiceThread("reaper", self.reaper.sweep, s.heartbeat_interval, self.stop_event),
            ServiceThread(
                "retry-recovery", self.retry_recovery.recover, s.heartbeat_interval, self.stop_event
            ),
            ServiceThread("result-writer", self._flush_results, 1.0, self.stop_event),
            ServiceThread("history-pruner", self._prune_history, 3600.0, self.stop_event),
        ]
        self.api_sync = ApiSyncService(
            self.db,
            self.redis,
            s,
            self.metrics,
            interval=self.api_sync_interval,
            stop=self.stop_event,
        )
        if self.enable_api_sync and s.api_url:
            self.threads.append(
                ServiceThread(
                    "api-sync", self.api_sync.step, self.api_sync_interval, self.stop_event
                )
            )
        self.requests = RequestProcessor(
            self.db,
            self.runner,
            self.instance_id,
            trigger=self.trigger_now,
            submit=self.executor.run_now,
        )
        requests_thread = ServiceThread(
            "run-requests", self.requests.process, REQUEST_POLL_SECONDS, self.stop_event
        )
        self.threads.append(requests_thread)
        self.watcher.channels[REQUEST_CHANNEL] = lambda _payload: requests_thread.poke()

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
            self.health = HealthServer(self, s.http_host, s.http_port)
            self.health.start()
        wait_for_services(self.db, self.redis, s.startup_timeout)
        check_migrations(s.database_url, migrate_on_start=s.migrate_on_start)
        self.heartbeat.beat()
        leftovers = self.store.abandon_own_leftovers(
            f"instance {self.instance_id} restarted before the run finished"
        )
        if leftovers:
            log.warning("scheduler.recovered_leftovers", abandoned=len(leftovers))
        self.scheduler.start(paused=True)
        self.pipeline.start()
        self.watcher.initial_load(catch_up=self._alone())
        self.scheduler.resume()
        # Retries an earlier process of this instance left pending (it kept them in memory).
        self.retry_recovery.recover(including_own=True)
        for thread in self.threads:
            thread.start()
        self.watcher.start()
        self.started = True
        self.started_at = self.clock.now().isoformat()
        sd_notify("READY=1")
        log.info("scheduler.started", jobs_loaded=self.loader.count)

    def _alone(self) -> bool:
        """Whether no other instance is running. Catch-up is for occurrences missed while *no*
        instance ran: with peers alive, a persisted next_run in the past is theirs to run (or
        about to be), not a missed one."""
        try:
            peers = live_instances(self.redis, self.settings.redis_key_prefix) - {self.instance_id}
        except redis.RedisError as exc:
            log.warning("scheduler.peers_unknown", error=str(exc))
            return True
        if peers:
            log.info("scheduler.catchup_left_to_peers", peers=sorted(peers)[:20])
        return not peers

    def run(self) -> int:
        """Block until SIGTERM/SIGINT (or stop()), then shut down. Returns the exit code."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        if not self.started:
            self.start()
        while not self.stop_event.wait(1.0):
            sd_notify("WATCHDOG=1")
            for thread in self.threads:
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
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        sd_notify("STOPPING=1")
        log.info("scheduler.stopping", running=len(self.runner.active_runs()))
        if self.scheduler.running:
            self.scheduler.pause()
        deadline = time.monotonic() + self.settings.shutdown_timeout
        # A batch being locked and claimed right now must register its runs before we look.
        self.pipeline.stop_starting(timeout=self.settings.shutdown_timeout)
        while self.runner.active_runs() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.runner.stop_all()
        grace = time.monotonic() + 1.5
        while self.runner.active_runs() and time.monotonic() < grace:
            time.sleep(0.05)
        for run in self.runner.active_runs():
            # A handler that ignores its cancel event: record it and free its lock ourselves.
            self.store.abandon(run.execution_id, "the instance shut down before the run finished")
            if run.lock is not None:
                run.lock.release()
        self.pipeline.close(timeout=0.5)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # One deadline for all side threads (not one each): a dead PostgreSQL must not add up
        # to many seconds of joins past SHUTDOWN_TIMEOUT.
        # They were told to stop when shutdown began, so their time counts from then; one stuck
        # in a call to a dead server is a daemon thread and is left behind.
        join_by = max(deadline + 1.0, time.monotonic() + 0.2)
        for thread in self.threads:
            thread.poke()
        for thread in self.threads:
            thread.join(max(0.0, join_by - time.monotonic()))
        self.watcher.join(max(0.0, join_by - time.monotonic()))
        if self.store.pending_count and not self.store.database_down:
            self.store.flush_pending()
        if self.store.pending_count:
            log.error(
                "scheduler.results_unwritten",
                count=self.store.pending_count,
                reason="PostgreSQL unreachable at shutdown",
            )
        self.heartbeat.remove()
        if self.health is not None:
            self.health.stop()
        self.handlers.close()
        self.db.close()
        self.redis.close()
        log.info("scheduler.stopped")

    # -- firing -------------------------------------------------------------------------------

    def _dispatch(self, job: Any, run_times: list[datetime], done: Callable[[], None]) -> None:
        """Executor hook, on the scheduler's thread: queue a job's due occurrences."""
        planned: list[Planned] = job.func(*job.args, run_times=run_times, **job.kwargs)
        if not planned:
            done()
            return
        countdown = _Countdown(len(planned), done)
        for occ, skip in planned:
            self.pipeline.submit(occ, countdown.tick, skip=skip)

    def fire(self, schedule_id: str, run_times: Sequence[datetime] = ()) -> list[Planned]:
        """A schedule's job: its due occurrences, each to run or (coalesced) to record skipped."""
        loaded = self.loader.get(UUID(schedule_id))
        if loaded is None:
            return []
        due = list(run_times)
        planned: list[Planned] = []
        if self.settings.job_coalesce and len(due) > 1:
            reason = ("coalesced: a later occurrence was due at the same time", "coalesced")
            planned = [
                (Occurrence(loaded, moment, moment, job_id=schedule_id), reason)
                for moment in due[:-1]
            ]
            due = due[-1:]
        planned += [
            (Occurrence(loaded, moment, moment, job_id=schedule_id), None) for moment in due
        ]
        return planned

    def _on_overlap(self, job: Any, run_times: list[datetime]) -> None:
        loaded = self.loader.get(UUID(str(job.args[0]))) if job.args else None
        if loaded is None:
            return
        for moment in run_times:
            self.runner.skip(
                Occurrence(loaded, moment, moment, job_id=job.id),
                "the previous run of this schedule is still going on this instance "
                f"(JOB_MAX_INSTANCES={self.settings.job_max_instances})",
                "overlap",
            )

    def _schedule_retry(self, occ: Occurrence, due: datetime) -> None:
        job_id = retry_job_id(occ.loaded.schedule_id, occ.scheduled_for, occ.attempt)
        self.scheduler.add_job(
            self._fire_retry,
            DateTrigger(run_date=due),
            id=job_id,
            replace_existing=True,
            args=(str(occ.loaded.schedule_id), occ.scheduled_for, occ.attempt),
        )

    def _fire_retry(
        self,
        schedule_id: str,
        scheduled_for: datetime,
        attempt: int,
        run_times: Sequence[datetime] = (),
    ) -> list[Planned]:
        loaded = self.loaded_for_retry(UUID(schedule_id))
        if loaded is None:
            log.info(
                "run.retry_dropped",
                schedule_id=schedule_id,
                attempt=attempt,
                reason="schedule removed or disabled",
            )
            return []
        occ = Occurrence(
            loaded,
            scheduled_for,
            run_times[-1],
            attempt,
            RunTrigger.RETRY,
            job_id=retry_job_id(schedule_id, scheduled_for, attempt),
        )
        return [(occ, None)]

    def run_catchup(self, loaded: LoadedSchedule, moment: datetime) -> None:
        """Submit one missed occurrence (within its grace) to the worker pool."""
        occ = Occurrence(
            loaded, moment, moment, trigger=RunTrigger.CATCHUP, job_id=str(loaded.schedule_id)
        )
        self.pipeline.submit(occ)

    def trigger_now(self, schedule_id: UUID | str) -> RunReport:
        """Run a schedule now (trigger='manual'), under the same lock and history; blocks."""
        loaded = self.loader.get(UUID(str(schedule_id)))
        if loaded is None:
            loaded = self.loader.parse(self._require_schedule(schedule_id))
        moment = self.clock.now()
        now = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return self.runner.run(
            Occurrence(loaded, now, now, trigger=RunTrigger.MANUAL, job_id=f"manual:{schedule_id}")
        )

    def loaded_for_retry(self, schedule_id: UUID) -> LoadedSchedule | None:
        """The schedule a retry belongs to: loaded, or, for a `once` whose only occurrence has
        passed (no longer loaded), read again. None when it is gone, disabled or invalid."""
        loaded = self.loader.get(schedule_id)
        if loaded is not None:
            return loaded
        try:
            schedule = self._require_schedule(schedule_id)
            return self.loader.parse(schedule) if schedule.enabled else None
        except (ScheduleNotFound, InvalidScheduleError, DatabaseUnavailable, DatabaseError):
            return None

    def _require_schedule(self, schedule_id: UUID | str) -> Schedule:
        from services.store.schedules import ScheduleRepository

        repo = ScheduleRepository(self.db, default_timezone=self.settings.scheduler_timezone)
        schedule = repo.get_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        return schedule

    def sync_schedules_from_api(self) -> dict[str, int]:
        """Sync now under `lock:api_sync`: the counts {created, updated, skipped, invalid,
        disabled}, all zero when another instance holds the lock (it is syncing right now).
        Raises ApiSyncError (nothing changed) when the answer could not be read whole."""
        result = self.api_sync.run()
        return zero_counts() if result is None else dict(result.counts)

    def _prune_history(self) -> None:
        """Daily, on one instance: delete finished runs older than HISTORY_RETENTION_DAYS."""
        days = self.settings.history_retention_days
        if days <= 0:
            return
        key = f"{self.settings.redis_key_prefix}scheduler:history_cleanup"
        try:
            # The first instance to take the daily key prunes; the others see it and skip.
            if not self.redis.set(key, self.instance_id, nx=True, px=PRUNE_PERIOD_MS):
                return
        except redis.RedisError as exc:
            log.warning("history.prune_skipped", error=str(exc))
            return
        deleted = JobHistory(self.db).cleanup_old_executions(days)
        log.info("history.pruned", deleted=deleted, retention_days=days)

    def _park(self, occ: Occurrence) -> None:
        with self._parked_lock:
            if len(self._parked) < MAX_PARKED:
                self._parked.append(occ)
                return
        self.runner.skip(occ, "PostgreSQL unreachable and too many occurrences waiting", "database")

    def _recheck_later(self, occ: Occurrence, delay: float) -> None:
        shared_timer().call_later(delay, functools.partial(self._recheck_submit, occ))

    def _recheck_submit(self, occ: Occurrence) -> None:
        if not self.stop_event.is_set():
            self.executor.run_now(functools.partial(self._recheck, occ))

    def _recheck(self, occ: Occurrence) -> None:
        """An occurrence another instance held: run it (or record it skipped, if now too late)
        unless that instance got as far as claiming it."""
        try:
            if self.store.occurrence_exists(occ.key()):
                return
        except (DatabaseUnavailable, DatabaseError):
            pass  # the run below parks it until PostgreSQL returns
        log.warning(
            "run.recheck_unclaimed",
            schedule_id=str(occ.loaded.schedule_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            attempt=occ.attempt,
        )
        self.runner.run(occ)

    def _flush_results(self) -> None:
        """Every second: write results that waited for PostgreSQL, then release the occurrences
        that waited for it (the latest per schedule when coalescing; the rest are skipped)."""
        if self.store.pending_count:
            self.store.flush_pending()
        elif self.store.database_down:
            self.store.probe()
        if self.store.database_down or not self._parked:
            return
        with self._parked_lock:
            parked, self._parked = self._parked, []
        ready = sorted(parked, key=lambda o: o.scheduled_for)
        if self.settings.job_coalesce:
            latest: dict[tuple[UUID, int], Occurrence] = {}
            for occ in ready:
                key = (occ.loaded.schedule_id, occ.attempt)
                if key in latest:
                    self.runner.skip(
                        latest[key],
                        "coalesced with a later occurrence due while PostgreSQL was unreachable",
                        "coalesced",
                    )
                latest[key] = occ
            ready = list(latest.values())
        for occ in ready:
            self.pipeline.submit(occ)

    # -- status -------------------------------------------------------------------------------

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
        }

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "jobs_loaded": self.loader.count,
            "running_executions": [
                {
                    "execution_id": str(run.execution_id),
                    "schedule_id": str(run.occurrence.loaded.schedule_id),
                    "scheduled_for": run.occurrence.scheduled_for.isoformat(),
                    "attempt": run.occurrence.attempt,
                }
                for run in self.runner.active_runs()
            ],
            "pending_result_writes": self.store.pending_count,
            "heartbeat_ok": self.heartbeat.healthy,
            "watcher": self.watcher.status(),
            "last_sync": self.api_sync.status(),
        }


# An occurrence to run, or to record as skipped with (reason, kind).
Planned = tuple[Occurrence, tuple[str, str] | None]


class _Countdown:
    """Calls `done` after `count` ticks: a job is finished when all its occurrences are."""

    def __init__(self, count: int, done: Callable[[], None]) -> None:
        self._left = count
        self._done = done
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._left -= 1
            finished = self._left == 0
        if finished:
            self._done()


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
    _exit_even_if_a_handler_hangs(code)
    return code


def _exit_even_if_a_handler_hangs(code: int) -> None:
    # Worker threads are joined at interpreter exit; a python handler that ignores its cancel
    # event would keep the process alive past SHUTDOWN_TIMEOUT. Its row is already abandoned
    # and its lock released, so leave now.
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread.name.startswith("job-worker"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.name.startswith("job-worker") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(run_enhanced_scheduler())
