"""One occurrence, start to finish: lock ▸ claim ▸ handler ▸ fenced result ▸ release ▸ maybe retry.

Exactly-once rests on two things: the Redis lock keeps two runs of one schedule from overlapping,
and the database's unique key on (schedule_id, scheduled_for, attempt) keeps one occurrence from
being claimed twice even if the lock failed. A run never starts without its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import redis

from services.clock import Clock
from services.engine.admission import Candidate, LockGate
from services.engine.handler_call import call_handler
from services.engine.handlers import HandlerRegistry, JobOutcome
from services.engine.overlap import OverlapDoor
from services.engine.runs import ActiveRun, Begun, Ended, final_status
from services.errors import DatabaseError, DatabaseUnavailable
from services.lock.lock import DistributedLock, release_many
from services.log import get_logger
from services.metrics import Metrics
from services.model.fire_times import next_fire_time
from services.model.occurrence import (
    Claim,
    FinalResult,
    Occurrence,
    RunReport,
    misfire_grace,
)
from services.model.retry import RetryPolicy
from services.model.vocabulary import ExecutionStatus, JobType, RunTrigger
from services.ops.timer import TimerThread
from services.store.executions import ExecutionStore

log = get_logger(__name__)


class JobRunner:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        redis_client: redis.Redis,
        handlers: HandlerRegistry,
        metrics: Metrics,
        clock: Clock,
        timer: TimerThread,
        retry_policy: RetryPolicy,
        instance_id: str,
        lock_ttl: float,
        default_grace: float,
        default_timeout: float,
        default_job_type: str,
        key_prefix: str = "",
        schedule_retry: Callable[[Occurrence, datetime], None] | None = None,
        park: Callable[[Occurrence], bool] | None = None,
        recheck: Callable[[Occurrence, float], None] | None = None,
        pause_reason: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.redis = redis_client
        self.handlers = handlers
        self.metrics = metrics
        self.clock = clock
        self.timer = timer
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
        self.pause_reason = pause_reason  # the global pause (engine/pause.py)
        self.overlap: OverlapDoor | None = None  # the overlap policies (engine/overlap.py)
        self.after_complete: Callable[[], None] = lambda: None  # wakes the queue loop
        self._active: dict[UUID, ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()
        self.gate = LockGate(
            redis_client,
            instance_id=instance_id,
            ttl=lock_ttl,
            prefix=key_prefix,
            metrics=metrics,
            timer=timer,
            clock=clock,
        )

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

    def skip(self, occ: Occurrence, reason: str, kind: str, **details: Any) -> RunReport:
        """Record a due occurrence as `skipped`, count it and say why. Never raises: a skip the
        database refuses (its schedule was just deleted, say) is only logged."""
        try:
            recorded = self.store.record_skipped(
                occ.key(), reason, {"reason": kind, **details}, execution_id=occ.claim_id
            )
        except DatabaseError as exc:
            log.warning(
                "run.skip_unrecorded", schedule_id=str(occ.loaded.schedule_id), error=str(exc)
            )
            recorded = False
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
        """One occurrence start to finish, on this thread (manual triggers, rechecks)."""
        (begun,) = self.begin([occ])
        if isinstance(begun, RunReport):
            return begun
        (report,) = self.complete([self.execute(begun)])
        return report

    # -- the three phases: begin (many at once), execute (one per worker), complete (many) ----

    def begin(self, occurrences: Sequence[Occurrence]) -> list[Begun | RunReport]:
        """Lock and claim occurrences due together: one Redis round trip for all their locks,
        one statement for all their claims. Begun: ours to run. RunReport: skipped, parked or
        another run's, already accounted for."""
        answers: list[Begun | RunReport | None] = [None] * len(occurrences)
        candidates: list[Candidate] = []
        now = self.clock.now()
        paused = self.pause_reason()  # every way to start a run passes here: none while paused
        for i, occ in enumerate(occurrences):
            lateness = (now - occ.due_at).total_seconds()
            grace = misfire_grace(occ.loaded, self.default_grace)
            if paused is not None:
                answers[i] = self.skip(occ, paused, "paused")  # no lock taken, nothing claimed
            elif occ.trigger is not RunTrigger.MANUAL and lateness > grace:
                answers[i] = self.skip(
                    occ,
                    f"missed by {lateness:.1f}s, beyond the misfire grace time of {grace:g}s",
                    "late",
                    lateness_seconds=round(lateness, 3),
                )
            elif self.store.database_down:
                answers[i] = self._park(occ)
            else:
                active = ActiveRun(occ.claim_id or uuid4(), occ)
                candidates.append((i, active, self.gate.lock_for(active)))
        held = self._acquire_all(candidates, answers)
        if held and self.overlap is not None:
            held = self.overlap.admit(held, answers)  # live occurrences already waiting go first
        if held:
            self._claim_all(held, answers)
        assert all(answer is not None for answer in answers)
        return answers  # type: ignore[return-value]

    def _acquire_all(
        self, candidates: list[Candidate], answers: list[Begun | RunReport | None]
    ) -> list[Candidate]:
        """Take the candidates' locks; those not taken get their answer. Returns those held."""
        verdict = self.gate.acquire_all(candidates)
        for (i, active, _), reason, kind in verdict.skipped:
            answers[i] = self.skip(active.occurrence, reason, kind)
        for (i, active, lock), holder in verdict.overlapped:
            assert self.overlap is not None, "build_engine gives every runner its overlap door"
            answers[i] = self.overlap.on_overlap(active, lock, holder)
        for i, active, _ in verdict.elsewhere:
            # Another instance holds this very occurrence. Should it die before claiming it,
            # the occurrence would vanish: look again once its lock must have expired.
            if self.recheck is not None:
                self.recheck(active.occurrence, self.lock_ttl + 1.0)
            answers[i] = RunReport(None, "conflict", "lock held for this occurrence")
        return verdict.held

    def _claim_all(
        self,
        held: list[tuple[int, ActiveRun, DistributedLock]],
        answers: list[Begun | RunReport | None],
    ) -> None:
        requests = [(active.occurrence.key(), active.execution_id) for _, active, _ in held]
        try:
            claims = self.store.claim_many(requests)
        except DatabaseUnavailable:
            # Release first: another instance that can reach PostgreSQL may run them.
            release_many([lock for _, _, lock in held])
            for i, active, _ in held:
                answers[i] = self._park(active.in_doubt())
            return
        refused = []
        for (i, active, lock), claim in zip(held, claims, strict=True):
            if isinstance(claim, Claim):
                with self._active_lock:
                    self._active[active.execution_id] = active
                self.metrics.running_executions.inc()
                answers[i] = Begun(active, claim, lock)
                continue
            refused.append(lock)
            if isinstance(claim, DatabaseUnavailable):
                answers[i] = self._park(active.in_doubt())
            elif isinstance(claim, BaseException):
                # e.g. the schedule was deleted a moment ago (foreign key): nothing to run.
                log.info(
                    "run.claim_refused",
                    schedule_id=str(active.occurrence.loaded.schedule_id),
                    error=str(claim),
                    constraint=getattr(claim, "constraint", None),
                )
                answers[i] = RunReport(None, "conflict", "occurrence claim refused")
            else:
                answers[i] = RunReport(None, "conflict", "occurrence claimed by another run")
        release_many(refused)

    def execute(self, begun: Begun) -> Ended:
        """Run the handler of a begun occurrence (on a worker thread); nothing is written yet."""
        active, claim = begun.active, begun.claim
        occ = active.occurrence
        schedule = occ.loaded.schedule
        timeout = occ.loaded.spec.timeout_seconds or self.default_timeout
        # http and command handlers enforce their own time-out; a python callable runs in this
        # thread and can only be told (through its cancel event) once its time is up.
        backstop = None
        if (schedule.job_type or self.default_job_type) == JobType.PYTHON:
            backstop = self.timer.call_later(timeout + 1.0, lambda: active.cancel("timeout"))
        started = self.clock.monotonic()
        lateness = (self.clock.now() - occ.due_at).total_seconds()
        self.metrics.fire_lateness.observe(max(0.0, lateness))
        # The fault suite counts these: two for one occurrence would be two runners.
        log.debug(
            "run.started",
            schedule_id=str(schedule.schedule_id),
            execution_id=str(claim.execution_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            attempt=occ.attempt,
            lateness_s=round(lateness, 3),
        )
        try:
            outcome = call_handler(
                self.handlers, self.store, self.default_job_type, active, claim, timeout
            )
        except Exception as exc:  # a handler bug must still end in a recorded result
            log.exception("run.handler_crashed", schedule_id=str(schedule.schedule_id))
            outcome = JobOutcome.failure(type(exc).__name__, str(exc), retryable=False)
        finally:
            if backstop is not None:
                backstop.cancel()
        return Ended(begun, outcome, self.clock.monotonic() - started)

    def complete(self, ended: Sequence[Ended]) -> list[RunReport]:
        """Record finished runs (one statement for all), release their locks, schedule retries."""
        results = [self._final_result(e) for e in ended]
        try:
            written = self.store.finish_many(results)
        finally:
            with self._active_lock:
                for e in ended:
                    self._active.pop(e.begun.active.execution_id, None)
            self.metrics.running_executions.dec(len(ended))
            release_many([e.begun.lock for e in ended])
        reports = []
        for e, result, (row_written, schedule_written) in zip(ended, results, written, strict=True):
            report, retry = self._account(e, result, row_written, schedule_written)
            reports.append(report)
            if (
                retry is not None
                and self.schedule_retry is not None
                and not self._stopping.is_set()
            ):
                self.schedule_retry(*retry)
        self.after_complete()
        return reports

    def adopt(self, active: ActiveRun, claim: Claim, lock: DistributedLock) -> Begun:
        """A queued occurrence this instance started (engine/queue.py): now one of its runs."""
        with self._active_lock:
            self._active[active.execution_id] = active
        self.metrics.running_executions.inc()
        return Begun(active, claim, lock)

    def _final_result(self, ended: Ended) -> FinalResult:
        occ = ended.begun.active.occurrence
        status, message, details = final_status(ended.begun.active, ended.outcome, ended.begun.lock)
        if self._earns_retry(ended, status):
            # Written with the outcome, so a reader of the row (notifications: `failed` is for
            # the last attempt only) knows another attempt follows without asking this process.
            details = {**(details or {}), "retry_planned": True}
        if ended.begun.lock.lost.is_set():
            self.metrics.lock_lost.inc()
        now = self.clock.now()
        return FinalResult(
            execution_id=ended.begun.claim.execution_id,
            fencing_token=ended.begun.claim.fencing_token,
            status=status.value,
            duration_seconds=ended.duration,
            error_message=message,
            error_details=details,
            metadata=ended.outcome.metadata,
            scan_id=ended.outcome.scan_id,
            next_run=next_fire_time(occ.loaded.spec, max(now, occ.scheduled_for), now),
        )

    def _account(
        self, ended: Ended, result: FinalResult, written: bool, schedule_written: bool
    ) -> tuple[RunReport, tuple[Occurrence, datetime] | None]:
        """Metrics, the run's log line, and the retry it may earn."""
        occ = ended.begun.active.occurrence
        status = ExecutionStatus(result.status)
        self.metrics.executions.labels(status=status.value).inc()
        self.metrics.execution_duration.observe(ended.duration)
        fields = {
            "schedule_id": str(occ.loaded.schedule_id),
            "execution_id": str(result.execution_id),
            "attempt": occ.attempt,
            "scheduled_for": occ.scheduled_for.isoformat(),
            "trigger": occ.trigger.value,
        }
        log.info(
            "run.completed" if status is ExecutionStatus.COMPLETED else "run.finished",
            **fields,
            status=status.value,
            duration_s=round(ended.duration, 3),
            error=result.error_message,
            written=written,
            schedule_written=schedule_written,
        )
        if not written:
            log.warning(
                "run.result_refused", **fields, reason="row no longer ours (fenced or reaped)"
            )
        report = RunReport(result.execution_id, status.value, result.error_message or "")
        if not self._earns_retry(ended, status):
            return report, None
        delay = self.retry_policy.delay(occ.attempt)
        due = self.clock.now() + timedelta(seconds=delay)
        log.info(
            "run.retry_scheduled", **fields, next_attempt=occ.attempt + 1, delay_s=round(delay, 3)
        )
        retry = replace(
            occ, attempt=occ.attempt + 1, trigger=RunTrigger.RETRY, due_at=due, claim_id=None
        )
        return report, (retry, due)

    def _earns_retry(self, ended: Ended, status: ExecutionStatus) -> bool:
        """A retryable failure with attempts left, whose lock held to the end."""
        occ = ended.begun.active.occurrence
        attempts = self.retry_policy.attempts_for(occ.loaded.spec.max_retries)
        lock_lost = ended.begun.lock.lost.is_set()
        retryable = ended.outcome.retryable and not lock_lost and status in _RETRYABLE
        return retryable and occ.attempt < attempts

    def _park(self, occ: Occurrence) -> RunReport:
        """PostgreSQL is unreachable: hold the occurrence (no lock, no worker) until it returns;
        it then runs if still within its grace, else it is recorded skipped."""
        if self.park is None or self._stopping.is_set():
            return self.skip(occ, "PostgreSQL unreachable when the occurrence was due", "database")
        if not self.park(occ):
            return self.skip(
                occ, "PostgreSQL unreachable and too many occurrences waiting", "database"
            )
        log.warning(
            "run.parked",
            schedule_id=str(occ.loaded.schedule_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            attempt=occ.attempt,
        )
        return RunReport(None, "parked", "waiting for PostgreSQL")


_RETRYABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
