"""The overlap policies at the runner's door: an occurrence due while an earlier run of its
schedule is going (on any instance), or while occurrences already wait for it.

The lock tells who runs. An occurrence that finds the schedule's lock held by an earlier run,
or finds it free while live occurrences of the schedule wait ahead of it (`queued` rows), asks
`model.overlap.decide`: run, skip, queue (a `queued` row, started later by the queue loop of
whichever instance is free, `engine/queue.py`), or replace (queued, and the earlier run is
stopped wherever it runs: by this instance's runner, or a `run_requests` cancel). Every
decision is counted in `scheduler_overlap_decisions_total{policy,decision}`; a skip is also a
`skipped` row, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from services.engine.admission import Candidate
from services.engine.runs import ActiveRun, Begun
from services.errors import DatabaseError, DatabaseUnavailable
from services.lock.lock import DistributedLock, release_many
from services.log import get_logger
from services.metrics import Metrics
from services.model.occurrence import RunReport, token_occurrence
from services.model.overlap import (
    QUEUEING,
    Decision,
    OverlapPolicy,
    decide,
    replaced_reason,
)
from services.model.vocabulary import ExecutionStatus
from services.store.queue import QueueStore

log = get_logger(__name__)
Skip = Callable[..., RunReport]  # JobRunner.skip(occ, reason, kind)


class OverlapDoor:
    def __init__(
        self,
        queue: QueueStore,
        *,
        instance_id: str,
        metrics: Metrics,
        skip: Skip,
        cancel_local: Callable[[UUID, str], bool],
        request_cancel: Callable[[UUID, str], object],
    ) -> None:
        self.queue = queue
        self.instance_id = instance_id
        self.metrics = metrics
        self.skip = skip
        self.cancel_local = cancel_local
        self.request_cancel = request_cancel
        self.poke: Callable[[], None] = lambda: None  # wakes the queue loop (engine/queue.py)

    def on_overlap(self, active: ActiveRun, lock: DistributedLock, holder: str) -> RunReport:
        """The schedule's lock is held by an earlier run (`holder` is its token)."""
        occ = active.occurrence
        policy = occ.loaded.spec.overlap_policy
        if policy is OverlapPolicy.SKIP:  # as before: no query, the same row
            self._count(policy, Decision.SKIP)
            return self.skip(
                occ, f"lock {lock.key} is still held by an earlier run ({holder})", "overlap"
            )
        try:
            waiting = self.queue.waiting([occ.loaded.schedule_id]).get(occ.loaded.schedule_id, 0)
        except (DatabaseError, DatabaseUnavailable) as exc:
            return self.skip(occ, f"previous run still going; cannot queue: {exc}", "database")
        decision, why = decide(
            policy, earlier_running=True, waiting=waiting, max_buffered=occ.loaded.spec.max_buffered
        )
        return self._apply(active, decision, why, holder)

    def admit(
        self, held: list[Candidate], answers: list[Begun | RunReport | None]
    ) -> list[Candidate]:
        """Of the occurrences whose lock we took, those of a queueing policy with live
        occurrences waiting ahead go behind them (queued or skipped, lock released); the rest
        are returned to be claimed. Holding the lock, nobody else can start or queue ahead."""
        ids = [a.occurrence.loaded.schedule_id for _, a, _ in held if _queueing(a)]
        if not ids:
            return held
        try:
            waiting = self.queue.waiting(ids)
        except (DatabaseError, DatabaseUnavailable):
            return held  # the claim meets the same outage and parks them
        keep: list[Candidate] = []
        behind: list[DistributedLock] = []
        for candidate in held:
            i, active, lock = candidate
            ahead = waiting.get(active.occurrence.loaded.schedule_id, 0)
            if not _queueing(active) or ahead == 0:
                keep.append(candidate)
                continue
            spec = active.occurrence.loaded.spec
            decision, why = decide(
                spec.overlap_policy,
                earlier_running=False,
                waiting=ahead,
                max_buffered=spec.max_buffered,
            )
            answers[i] = self._apply(active, decision, why, None)
            behind.append(lock)
        release_many(behind)
        if behind:
            self.poke()
        return keep

    def _apply(
        self, active: ActiveRun, decision: Decision, why: str, holder: str | None
    ) -> RunReport:
        occ = active.occurrence
        spec = occ.loaded.spec
        policy = spec.overlap_policy
        if decision is Decision.SKIP:
            self._count(policy, decision)
            return self.skip(occ, why, "overlap", policy=policy.value)
        limit = spec.max_buffered if policy is OverlapPolicy.BUFFER_ALL else 1
        details = {"policy": policy.value, "decision": decision.value}
        try:
            queued = self.queue.enqueue(
                occ.key(), active.execution_id, limit=limit, reason=why, details=details
            )
        except (DatabaseError, DatabaseUnavailable) as exc:
            return self.skip(occ, f"{why}; cannot queue: {exc}", "database")
        if queued is False:
            self._count(policy, Decision.SKIP)
            return self.skip(occ, f"{policy.value}: the queue is full", "overlap", limit=limit)
        if queued is None:
            return RunReport(None, "conflict", "occurrence already recorded")
        self._count(policy, decision)
        log.info(
            "run.queued",
            schedule_id=str(occ.loaded.schedule_id),
            execution_id=str(active.execution_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            policy=policy.value,
            reason=why,
        )
        if decision is Decision.REPLACE and holder is not None:
            self._stop_earlier(holder, replaced_reason(occ.scheduled_for.isoformat()), policy)
        self.poke()
        return RunReport(active.execution_id, ExecutionStatus.QUEUED.value, why)

    def _stop_earlier(self, holder: str, reason: str, policy: OverlapPolicy) -> None:
        """Stop the run holding the lock, wherever it runs: cancel (the handler's own cancel)
        or terminate (the same door; command handlers kill the process group at once)."""
        parsed = token_occurrence(holder)
        if parsed is None:
            return
        instance_id, execution_id = parsed[0], UUID(parsed[1])
        if policy is OverlapPolicy.TERMINATE_OTHER:
            reason = f"{reason} (terminated)"
        log.info("run.replacing", execution_id=str(execution_id), instance=instance_id)
        if instance_id == self.instance_id and self.cancel_local(execution_id, reason):
            return
        try:
            self.request_cancel(execution_id, reason)
        except (DatabaseError, DatabaseUnavailable) as exc:
            log.warning("run.replace_failed", execution_id=str(execution_id), error=str(exc))

    def _count(self, policy: OverlapPolicy, decision: Decision) -> None:
        self.metrics.overlap_decisions.labels(policy=policy.value, decision=decision.value).inc()


def _queueing(active: ActiveRun) -> bool:
    return active.occurrence.loaded.spec.overlap_policy in QUEUEING
