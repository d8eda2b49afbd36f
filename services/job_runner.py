"""One occurrence, start to finish: lock ▸ claim ▸ handler ▸ fenced result ▸ release ▸ maybe retry.

Exactly-once rests on two things: the Redis lock keeps two runs of one schedule from overlapping,
and the database's unique key on (schedule_id, scheduled_for, attempt) keeps one occurrence from
being claimed twice even if the lock failed. A run never starts without its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import redis

from services.clock import Clock
from services.distributed_lock import DistributedLock, schedule_lock_key
from services.errors import DatabaseError, DatabaseUnavailable, LockUnavailable
from services.execution_store import Claim, ExecutionStore, FinalResult, OccurrenceKey
from services.handlers import HandlerRegistry, JobContext, JobOutcome, UnknownJobType
from services.logging import get_logger
from services.metrics import Metrics
from services.models import ExecutionStatus, JobType, RunTrigger
from services.records import Schedule
from services.retry import RetryPolicy
from services.time_config import ScheduleSpec
from services.timer_thread import shared_timer
from services.triggers import next_fire_time

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedSchedule:
    """A schedule row with its parsed time specification, as loaded into the scheduler."""

    schedule: Schedule
    spec: ScheduleSpec

    @property
    def schedule_id(self) -> UUID:
        return self.schedule.schedule_id


@dataclass(frozen=True)
class Occurrence:
    loaded: LoadedSchedule
    scheduled_for: datetime  # the occurrence: identical on every instance
    due_at: datetime  # when it was meant to start (a retry's due time differs from scheduled_for)
    attempt: int = 1
    trigger: RunTrigger = RunTrigger.SCHEDULE
    job_id: str = ""

    def key(self) -> OccurrenceKey:
        s = self.loaded.schedule
        return OccurrenceKey(
            schedule_id=s.schedule_id,
            scheduled_for=self.scheduled_for,
            attempt=self.attempt,
            trigger=self.trigger.value,
            job_id=self.job_id or str(s.schedule_id),
            domain=s.domain,
            domain_config_id=s.domain_config_id,
        )


@dataclass
class ActiveRun:
    execution_id: UUID
    occurrence: Occurrence
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    lock: DistributedLock | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_event.set()


@dataclass(frozen=True)
class RunReport:
    execution_id: UUID | None
    status: str  # an ExecutionStatus value, or "conflict" when another run had the occurrence
    detail: str = ""


def lock_token(instance_id: str, execution_id: UUID, occurrence: Occurrence) -> str:
    """instance|execution|occurrence|attempt: says who holds a lock and for which occurrence."""
    stamp = occurrence.scheduled_for.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{instance_id}|{execution_id}|{stamp}|{occurrence.attempt}"


def token_occurrence(token: str) -> tuple[str, str, str, str] | None:
    parts = token.split("|")
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


class JobRunner:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        redis_client: redis.Redis,
        handlers: HandlerRegistry,
        metrics: Metrics,
        clock: Clock,
        retry_policy: RetryPolicy,
        instance_id: str,
        lock_ttl: float,
        default_grace: float,
        default_timeout: float,
        default_job_type: str,
        key_prefix: str = "",
        schedule_retry: Callable[[Occurrence, datetime], None] | None = None,
        park: Callable[[Occurrence], None] | None = None,
        recheck: Callable[[Occurrence, float], None] | None = None,
    ) -> None:
        self.store = store
        self.redis = redis_client
        self.handlers = handlers
        self.metrics = metrics
        self.clock = clock
        self.retry_policy = retry_policy
        self.instance_id = instance_id
        self.lock_ttl = lock_ttl
        self.default_grace = default_grace
        self.default_timeout = default_timeout
        self.default_job_type = default_job_type
        self.key_prefix = key_prefix
        self.schedule_retry = schedule_retry
        self.park = park
        self.recheck = recheck
        self._active: dict[UUID, ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()

    # -- the active-run registry ---------------------------------------------------------------

    def active_runs(self) -> list[ActiveRun]:
        with self._active_lock:
            return list(self._active.values())

    def cancel(self, execution_id: UUID, reason: str = "cancel_requested") -> bool:
        with self._active_lock:
            run = self._active.get(execution_id)
        if run is None:
            return False
        run.cancel(reason)
        return True

    def stop_all(self) -> None:
        """Shutdown: runs still going are told to stop and will be recorded `abandoned`."""
        self._stopping.set()
        for run in self.active_runs():
            run.cancel("shutdown")

    # -- one occurrence ---------------------------------------------------------------------

    def grace_for(self, loaded: LoadedSchedule) -> float:
        grace = loaded.spec.misfire_grace_time
        return self.default_grace if grace is None else grace

    def skip(self, occ: Occurrence, reason: str, kind: str, **details: Any) -> RunReport:
        """Record a due occurrence as `skipped`, count it and say why."""
        recorded = self.store.record_skipped(occ.key(), reason, {"reason": kind, **details})
        self.metrics.misfires.labels(reason=kind).inc()
        log.warning(
            "run.skipped",
            schedule_id=str(occ.loaded.schedule_id),
            attempt=occ.attempt,
            scheduled_for=occ.scheduled_for.isoformat(),
            reason=reason,
            recorded=recorded,
        )
        return RunReport(None, ExecutionStatus.SKIPPED.value, reason)

    def run(self, occ: Occurrence) -> RunReport:
        lateness = (self.clock.now() - occ.due_at).total_seconds()
        grace = self.grace_for(occ.loaded)
        if occ.trigger is not RunTrigger.MANUAL and lateness > grace:
            return self.skip(
                occ,
                f"missed by {lateness:.1f}s, beyond the misfire grace time of {grace:g}s",
                "late",
                lateness_seconds=round(lateness, 3),
            )
        if self.store.database_down:
            return self._park(occ)
        execution_id = uuid4()
        active = ActiveRun(execution_id, occ)
        lock = active.lock = DistributedLock(
            self.redis,
            schedule_lock_key(occ.loaded.schedule_id, self.key_prefix),
            self.lock_ttl,
            self.instance_id,
            token=lock_token(self.instance_id, execution_id, occ),
            on_lost=lambda _lock: active.cancel("lock_lost"),
        )
        try:
            if not self._acquire(lock, occ):
                # Another instance holds this very occurrence. Should it die before claiming
                # it, the occurrence would vanish: look again once its lock must have expired.
                if self.recheck is not None:
                    self.recheck(occ, self.lock_ttl + 1.0)
                return RunReport(None, "conflict", "lock held for this occurrence")
        except _Skip as skip:
            return self.skip(occ, skip.reason, skip.kind)
        try:
            claim = self._claim(occ, execution_id)
            if claim is None:
                return RunReport(None, "conflict", "occurrence claimed by another run")
            with self._active_lock:
                self._active[execution_id] = active
            self.metrics.running_executions.inc()
            try:
                report, retry = self._execute(active, claim, lock)
            finally:
                self.metrics.running_executions.dec()
                with self._active_lock:
                    self._active.pop(execution_id, None)
        except _Park:
            lock.release()  # before parking: another instance that can reach PostgreSQL may run it
            return self._park(occ)
        finally:
            lock.release()
        if retry is not None and self.schedule_retry is not None and not self._stopping.is_set():
            self.schedule_retry(*retry)
        return report

    def _park(self, occ: Occurrence) -> RunReport:
        """PostgreSQL is unreachable: hold the occurrence (no lock, no worker) until it returns;
        it then runs if still within its grace, else it is recorded skipped."""
        if self.park is None or self._stopping.is_set():
            return self.skip(occ, "PostgreSQL unreachable when the occurrence was due", "database")
        self.park(occ)
        log.warning(
            "run.parked",
            schedule_id=str(occ.loaded.schedule_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            attempt=occ.attempt,
        )
        return RunReport(None, "parked", "waiting for PostgreSQL")

    def _acquire(self, lock: DistributedLock, occ: Occurrence) -> bool:
        """True when held. False: this occurrence is someone else's (quiet). _Skip: it cannot
        run now (Redis down, or an earlier run of the schedule still holds the lock)."""
        for _ in range(2):  # a holder that releases between our SET and GET gets one more try
            try:
                if lock.acquire():
                    return True
                holder = lock.holder()
            except LockUnavailable as exc:
                raise _Skip(
                    f"Redis unreachable, not run without its lock: {exc}", "redis"
                ) from None
            if holder is None:
                continue
            self.metrics.lock_conflicts.inc()
            parsed = token_occurrence(holder)
            mine = token_occurrence(lock.token)
            if parsed is not None and mine is not None and parsed[2:] == mine[2:]:
                log.debug(
                    "run.lock_conflict", schedule_id=str(occ.loaded.schedule_id), holder=holder
                )
                return False
            raise _Skip(f"lock {lock.key} is still held by an earlier run ({holder})", "overlap")
        return False

    def _claim(self, occ: Occurrence, execution_id: UUID) -> Claim | None:
        """Claim the occurrence; None when another run has it. PostgreSQL down: _Park."""
        try:
            return self.store.claim(occ.key(), execution_id)
        except DatabaseUnavailable:
            raise _Park() from None
        except DatabaseError as exc:
            # e.g. the schedule was deleted a moment ago (foreign key): nothing to run.
            log.info(
                "run.claim_refused",
                schedule_id=str(occ.loaded.schedule_id),
                error=str(exc),
                constraint=exc.constraint,
            )
            return None

    def _execute(
        self, active: ActiveRun, claim: Claim, lock: DistributedLock
    ) -> tuple[RunReport, tuple[Occurrence, datetime] | None]:
        occ = active.occurrence
        schedule = occ.loaded.schedule
        run_log = log.bind(
            schedule_id=str(schedule.schedule_id),
            execution_id=str(claim.execution_id),
            attempt=occ.attempt,
            scheduled_for=occ.scheduled_for.isoformat(),
            trigger=occ.trigger.value,
        )
        timeout = occ.loaded.spec.timeout_seconds or self.default_timeout
        # http and command handlers enforce their own time-out; a python callable runs in this
        # thread and can only be told (through its cancel event) once its time is up.
        backstop = None
        if (schedule.job_type or self.default_job_type) == JobType.PYTHON:
            backstop = shared_timer().call_later(timeout + 1.0, lambda: active.cancel("timeout"))
        started = self.clock.monotonic()
        self.metrics.fire_lateness.observe(
            max(0.0, (claim.started_at - occ.due_at).total_seconds())
        )
        run_log.debug(
            "run.started", lateness_s=round((claim.started_at - occ.due_at).total_seconds(), 3)
        )
        try:
            outcome = self._call_handler(active, claim, timeout, run_log)
        finally:
            if backstop is not None:
                backstop.cancel()
        duration = self.clock.monotonic() - started
        status, message, details = self._final_status(active, outcome, lock)
        next_run = next_fire_time(
            occ.loaded.spec, max(self.clock.now(), occ.scheduled_for), self.clock.now()
        )
        written, schedule_written = self.store.finish(
            FinalResult(
                execution_id=claim.execution_id,
                fencing_token=claim.fencing_token,
                status=status.value,
                duration_seconds=duration,
                error_message=message,
                error_details=details,
                metadata=outcome.metadata,
                scan_id=outcome.scan_id,
                next_run=next_run,
            )
        )
        self.metrics.executions.labels(status=status.value).inc()
        self.metrics.execution_duration.observe(duration)
        event = "run.completed" if status is ExecutionStatus.COMPLETED else "run.finished"
        run_log.info(
            event,
            status=status.value,
            duration_s=round(duration, 3),
            error=message,
            written=written,
            schedule_written=schedule_written,
        )
        if not written:
            run_log.warning("run.result_refused", reason="row no longer ours (fenced or reaped)")
        retry = None
        attempts = self.retry_policy.attempts_for(occ.loaded.spec.max_retries)
        retryable = outcome.retryable and not lock.lost.is_set() and status in _RETRYABLE
        if retryable and occ.attempt < attempts:
            delay = self.retry_policy.delay(occ.attempt)
            due = self.clock.now() + timedelta(seconds=delay)
            retry = (
                replace(occ, attempt=occ.attempt + 1, trigger=RunTrigger.RETRY, due_at=due),
                due,
            )
            run_log.info(
                "run.retry_scheduled", next_attempt=occ.attempt + 1, delay_s=round(delay, 3)
            )
        return RunReport(claim.execution_id, status.value, message or ""), retry

    def _call_handler(
        self, active: ActiveRun, claim: Claim, timeout: float, run_log: Any
    ) -> JobOutcome:
        occ = active.occurrence
        schedule = occ.loaded.schedule
        job_type = schedule.job_type or self.default_job_type
        try:
            handler = self.handlers.get(job_type)
            payload = dict(schedule.payload) if isinstance(schedule.payload, dict) else {}
            if schedule.profile_id is not None:
                payload = {**self.store.profile_settings(schedule.profile_id), **payload}
        except (UnknownJobType, DatabaseUnavailable, DatabaseError) as exc:
            return JobOutcome.failure(type(exc).__name__, str(exc), retryable=False)
        ctx = JobContext(
            execution_id=claim.execution_id,
            schedule_id=schedule.schedule_id,
            domain_config_id=schedule.domain_config_id,
            domain=schedule.domain,
            profile_id=schedule.profile_id,
            scheduled_for=occ.scheduled_for,
            attempt=occ.attempt,
            job_type=job_type,
            payload=payload,
            timeout=timeout,
            cancel_event=active.cancel_event,
            log=run_log,
        )
        return handler.run(ctx)

    def _final_status(
        self, active: ActiveRun, outcome: JobOutcome, lock: DistributedLock
    ) -> tuple[ExecutionStatus, str | None, dict[str, Any] | None]:
        status = ExecutionStatus(outcome.status)
        message = outcome.error_message
        details = dict(outcome.error_details) if outcome.error_details else None
        if lock.lost.is_set():
            self.metrics.lock_lost.inc()
            details = {**(details or {}), "lock_lost": True}
            if status is not ExecutionStatus.COMPLETED:
                status = ExecutionStatus.FAILED
                message = f"lock {lock.key} was lost while the run was going; the run was stopped"
        elif status is ExecutionStatus.CANCELLED:
            reason = active.cancel_reason
            if reason == "shutdown":
                status = ExecutionStatus.ABANDONED
                message = "the instance shut down before the run finished"
            elif reason == "timeout":
                status = ExecutionStatus.TIMED_OUT
                message = "the run did not finish within its time-out"
            else:
                message = message or "cancelled on request"
        return status, message, details


_RETRYABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})


class _Park(Exception):
    """PostgreSQL went away between the lock and the claim."""


class _Skip(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
